import CLI
import Foundation

@main
struct VGWD {
    static func main() async {
        exit(await DaemonCommand.run(Array(CommandLine.arguments.dropFirst())))
    }
}
