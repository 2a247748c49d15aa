@main struct VGWD { static func main() {} }
