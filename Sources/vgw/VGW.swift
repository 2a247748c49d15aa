@main struct VGW { static func main() {} }
