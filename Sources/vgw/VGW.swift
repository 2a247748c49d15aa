import CLI
import Foundation

@main
struct VGW {
    static func main() async {
        exit(await VGWCommand.run(Array(CommandLine.arguments.dropFirst())))
    }
}
