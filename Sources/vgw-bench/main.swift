import Foundation
import Support

// vgw-bench: see docs/PERFORMANCE.md.
do {
    if let options = try BenchOptions.parse(Array(CommandLine.arguments.dropFirst())) {
        exit(await Bench.run(options))
    }
} catch {
    FileHandle.standardError.write(Data("error: \(error)\nrun 'vgw-bench --help' for usage\n".utf8))
    exit(2)
}
