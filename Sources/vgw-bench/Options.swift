import Foundation
import Support

/// What one run measures and where it writes.
struct BenchOptions {
    var out = "bench-results"
    var quick = false
    var vgwd: String
    var messages: Int
    var latencySamples: Int
    var managementRequests: Int
    var levels: [Int]
    var aclChanges: Int
    var idleSeconds: Int
    var services: Int
    var rounds: Int
    /// Homes (each a real vgwd and broker, bridged to one cloud broker); 0 skips the fleet part.
    var homes: Int = 50

    static let spec = CommandSpec(
        "vgw-bench",
        summary: "measures vgwd against raw Mosquitto: data plane, management, VGW scale, idle cost, bundles",
        options: [
            .value(
                "--out", "-o", name: "dir", help: "output directory for results.csv and plots (default bench-results)"),
            .flag("--quick", help: "a smoke run with small sizes"),
            .value("--vgwd", name: "path", help: "the vgwd executable (default: next to vgw-bench)"),
            .value("--homes", name: "n", help: "homes in the fleet part (default 50, quick 3; 0 skips it)"),
            .value("--messages", name: "n", help: "messages per throughput run (default 50000, quick 2000)"),
            .value("--latency-samples", name: "n", help: "round trips per latency run (default 5000, quick 300)"),
        ])

    /// nil when help was printed.
    static func parse(_ arguments: [String]) throws -> BenchOptions? {
        let parsed = try ArgumentParser.parse(arguments, root: spec)
        if parsed.helpRequested {
            print(ArgumentParser.help(for: [], root: spec))
            return nil
        }
        let quick = parsed.flag("--quick")
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let sibling = executable.deletingLastPathComponent().appendingPathComponent("vgwd").path
        var options = BenchOptions(
            quick: quick, vgwd: parsed.value("--vgwd") ?? sibling,
            messages: quick ? 2000 : 50_000, latencySamples: quick ? 300 : 5000,
            managementRequests: quick ? 200 : 2000, levels: quick ? [10, 50] : [10, 100, 1000],
            aclChanges: quick ? 2 : 5, idleSeconds: quick ? 3 : 10, services: 10, rounds: quick ? 1 : 3)
        if let out = parsed.value("--out") { options.out = out }
        options.homes = try parsed.int("--homes") ?? (quick ? 3 : 50)
        guard options.homes >= 0 else { throw VGWError(.usage, "--homes must not be negative") }
        if let messages = try parsed.int("--messages") {
            guard messages > 0 else { throw VGWError(.usage, "--messages must be positive") }
            options.messages = messages
        }
        if let samples = try parsed.int("--latency-samples") {
            guard samples > 0 else { throw VGWError(.usage, "--latency-samples must be positive") }
            options.latencySamples = samples
        }
        guard FileManager.default.isExecutableFile(atPath: options.vgwd) else {
            throw VGWError(.usage, "no vgwd executable at \(options.vgwd); build it or pass --vgwd")
        }
        return options
    }
}
