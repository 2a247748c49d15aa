import Foundation
import MQTT
import Support
import Synchronization

/// Whatever must go away even when the run fails or is interrupted: temporary directories
/// and the processes the bench spawned (whose own children die with them: the broker and
/// the services are spawned with a parent-death signal).
enum Cleanup {
    private static let state = Mutex<(directories: Set<String>, pids: Set<pid_t>)>(([], []))
    nonisolated(unsafe) private static var sources: [any DispatchSourceProtocol] = []

    static func track(directory: String) { state.withLock { _ = $0.directories.insert(directory) } }
    static func forget(directory: String) { state.withLock { _ = $0.directories.remove(directory) } }
    static func track(pid: pid_t) { state.withLock { _ = $0.pids.insert(pid) } }
    static func forget(pid: pid_t) { state.withLock { _ = $0.pids.remove(pid) } }

    /// SIGINT, SIGTERM and a watchdog all end in `emergency`.
    static func install(timeout: Duration) {
        var installed: [any DispatchSourceProtocol] = []
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { emergency("interrupted by signal \(number)", status: 128 + number) }
            source.resume()
            installed.append(source)
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        let seconds = Double(timeout.components.seconds)
        timer.schedule(deadline: .now() + seconds)
        timer.setEventHandler { emergency("the run exceeded its watchdog of \(Int(seconds)) s", status: 1) }
        timer.resume()
        installed.append(timer)
        sources = installed
    }

    /// SIGTERM to every tracked process (vgwd stops its broker and services), SIGKILL
    /// after 5 s, remove the directories, exit.
    static func emergency(_ reason: String, status: Int32) -> Never {
        // Only the first caller cleans up; a second (signal and watchdog at once) waits for its exit.
        guard
            state.withLock({ state -> Bool in
                defer { state.pids.insert(-1) }
                return !state.pids.contains(-1)
            })
        else {
            while true { sleep(60) }
        }
        FileHandle.standardError.write(Data("vgw-bench: \(reason); cleaning up\n".utf8))
        let (directories, pids) = state.withLock { ($0.directories, $0.pids.filter { $0 > 0 }) }
        for pid in pids { kill(pid, SIGTERM) }
        for _ in 0..<50 where pids.contains(where: { kill($0, 0) == 0 && ProcStats.parent($0) == getpid() }) {
            usleep(100_000)
        }
        for pid in pids { kill(pid, SIGKILL) }
        for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
        exit(status)
    }
}

/// One full run: every measurement, then the table, the CSV and the plots.
enum Bench {
    static func run(_ options: BenchOptions) async -> Int32 {
        Cleanup.install(timeout: options.quick ? .seconds(300) : .seconds(1200))
        let report = Report()
        let started = Clock.now()
        do {
            try FileManager.default.createDirectory(atPath: options.out, withIntermediateDirectories: true)
        } catch {
            FileHandle.standardError.write(Data("error: cannot create \(options.out): \(error)\n".utf8))
            return 1
        }
        print("vgw-bench\(options.quick ? " (quick)" : ""): vgwd \(options.vgwd), results in \(options.out)")
        var raw: RawBroker?
        var daemon: DaemonProcess?
        var context: GatewayContext?
        var plots = Plots.Data(levels: [], dataPlane: [])
        var status: Int32 = 0
        do {
            raw = try await RawBroker.start()
            daemon = try await DaemonProcess.start(executable: options.vgwd)
            context = try await GatewayContext(daemon: daemon!, report: report)
            try await measure(options, context!, raw!, report, &plots)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            if let daemon, let log = try? String(contentsOfFile: daemon.logFile, encoding: .utf8) {
                FileHandle.standardError.write(Data("vgwd log (last lines):\n\(log.suffix(2000))\n".utf8))
            }
            report.note("the run failed: \(error)")
            status = 1
        }
        await context?.close()
        await daemon?.stop()
        await raw?.stop()
        report.add("run", "wall time", Clock.seconds(since: started), "s")

        let leftovers = ProcStats.descendants(of: getpid())
        if !leftovers.isEmpty {
            report.note("processes left behind: \(leftovers.map { "\($0) \(ProcStats.command($0) ?? "?")" })")
            status = 1
        }
        await Plots.write(plots, to: options.out, report: report)
        do {
            try report.csv().write(toFile: options.out + "/results.csv", atomically: true, encoding: .utf8)
            try (report.table() + "\n").write(toFile: options.out + "/results.txt", atomically: true, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("error: cannot write the results: \(error)\n".utf8))
            status = 1
        }
        print("\n" + report.table())
        print("\nwrote \(options.out)/results.csv, results.txt and the plots")
        return status
    }

    static func measure(
        _ options: BenchOptions, _ context: GatewayContext, _ raw: RawBroker, _ report: Report,
        _ plots: inout Plots.Data
    ) async throws {
        print("== VGW scale: memory and creation rate")
        try await Task.sleep(for: .seconds(1))
        let baseline = try context.memory()
        report.add("scale-0", "RSS vgwd", Double(baseline.vgwdKiB) / 1024, "MB")
        report.add("scale-0", "RSS mosquitto", Double(baseline.brokerKiB) / 1024, "MB")
        report.add("scale-0", "RSS total", Double(baseline.totalKiB) / 1024, "MB")
        plots.levels.append(ScaleBench.Level(providers: 0, memory: baseline))

        var first = try await ScaleBench.grow(context, to: options.levels[0], baseline: baseline)
        print("== vgwd idle")
        try await IdleBench.run(context, seconds: options.idleSeconds)
        print("== management round trips")
        try await ManagementBench.run(context, requests: options.managementRequests)
        print("== ACL change cost")
        let stallPair = try await context.clientPair("p0001", leaf: "stall")
        try await ScaleBench.probe(context, level: &first, stallPair: stallPair, changes: options.aclChanges)
        plots.levels.append(first)
        for target in options.levels.dropFirst() {
            var level = try await ScaleBench.grow(context, to: target, baseline: baseline)
            try await ScaleBench.probe(context, level: &level, stallPair: stallPair, changes: options.aclChanges)
            plots.levels.append(level)
        }
        // vgw.list answers with every VGW: its cost at the largest count.
        try await ManagementBench.run(context, requests: max(20, options.managementRequests / 10), ops: ["vgw.list"])

        print("== data plane: gateway (\(context.providers) VGWs) against raw mosquitto")
        let gatewayPair = try await context.clientPair("p0000", leaf: "bench")
        let rawPair = ClientPair(
            publisher: MQTTConfiguration(port: Int(raw.port), clientID: "bench-pub", reconnect: false),
            subscriber: MQTTConfiguration(port: Int(raw.port), clientID: "bench-sub", reconnect: false),
            topic: gatewayPair.topic)
        guard let gatewayBroker = context.daemon.brokerPid else { throw VGWError(.unavailable, "no broker") }
        for qos in [QoS.atMostOnce, .atLeastOnce] {
            let label = "QoS \(qos.rawValue)"
            // Rounds alternate raw and gateway so that load from elsewhere on the machine
            // hits both alike; the rate is the median round, latency pools every round.
            var rawRounds: [DataPlaneBench.Result] = []
            var gatewayRounds: [DataPlaneBench.Result] = []
            for _ in 0..<options.rounds {
                rawRounds.append(
                    try await DataPlaneBench.run(
                        rawPair, broker: raw.process.pid, qos: qos, messages: options.messages,
                        latencySamples: options.latencySamples))
                gatewayRounds.append(
                    try await DataPlaneBench.run(
                        gatewayPair, broker: gatewayBroker, qos: qos, messages: options.messages,
                        latencySamples: options.latencySamples))
            }
            let rawResult = DataPlaneBench.Result.combine(rawRounds)
            let gatewayResult = DataPlaneBench.Result.combine(gatewayRounds)
            for (name, result) in [("raw", rawResult), ("gateway", gatewayResult)] {
                let section = "data-\(name)"
                report.add(section, "\(label) throughput (median of \(options.rounds))", result.rate, "msg/s")
                report.add(section, "\(label) throughput slowest round", result.slowest, "msg/s")
                report.add(section, "\(label) throughput fastest round", result.fastest, "msg/s")
                report.add(
                    section, "\(label) delivered of \(result.sent) (worst round)", Double(result.delivered), "msgs")
                report.add(section, "\(label) broker CPU per message", result.brokerCPU, "us")
                report.add(section, "\(label) latency p50", result.latency.p50, "ms")
                report.add(section, "\(label) latency p99", result.latency.p99, "ms")
            }
            report.add("data-ratio", "\(label) throughput gateway/raw", gatewayResult.rate / rawResult.rate, "x")
            report.add(
                "data-ratio", "\(label) broker CPU per message gateway/raw",
                gatewayResult.brokerCPU / rawResult.brokerCPU,
                "x")
            report.add(
                "data-ratio", "\(label) latency p50 gateway/raw", gatewayResult.latency.p50 / rawResult.latency.p50,
                "x")
            report.add(
                "data-ratio", "\(label) latency p99 gateway/raw", gatewayResult.latency.p99 / rawResult.latency.p99,
                "x")
            plots.dataPlane.append((label, rawResult, gatewayResult))
        }

        print("== bundles")
        try await BundleBench.run(context, provider: "p0002", samples: 3, services: options.services)

        if options.homes > 0 {
            print("== fleet: \(options.homes) homes bridged to a cloud broker")
            try await FleetBench.run(
                vgwd: options.vgwd, homeCount: options.homes, samples: options.quick ? 50 : 500, report: report)
        }
    }
}
