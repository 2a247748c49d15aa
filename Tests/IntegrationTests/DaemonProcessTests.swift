import Broker
import CLI
import Foundation
import Gateway
import Supervisor
import Support
import Synchronization
import TestSupport
import Testing

/// The real executables: `vgwd` as a child process, stopped by signals, and `vgw` against it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct DaemonProcessTests {
    /// `vgwd` and `vgw` sit beside the test bundle in the build directory.
    static func executable(_ name: String) throws -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        let path = directory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw VGWError(.config, "\(path) is not built: run swift build --build-tests")
        }
        return path
    }

    /// Starts `vgwd` on a fresh directory and port; returns once `vgw status` answers.
    static func withDaemon(_ body: (ChildProcess, String, UInt16) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgwd-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try Ports.freePort(host: "127.0.0.1")
        let daemon = try await ChildProcess.spawn(
            SpawnRequest(
                executable: try executable("vgwd"),
                arguments: ["--data-dir", directory + "/data", "--port", String(port), "--home", "proc-home"],
                stdout: .file(path: directory + "/vgwd.log"), stderr: .file(path: directory + "/vgwd.log")))
        defer { daemon.signal(SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(20)
        while await VGWCommand.run(["status", "-d", directory + "/data"], out: { _ in }, err: { _ in }) != 0 {
            guard ContinuousClock.now < deadline, daemon.exitStatus == nil else {
                let log = (try? String(contentsOfFile: directory + "/vgwd.log", encoding: .utf8)) ?? ""
                throw VGWError(.timeout, "vgwd did not come up: \(log.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(50))  // polling a process we do not own the events of
        }
        try await body(daemon, directory + "/data", port)
    }

    /// Children of `pid` according to /proc (the broker, when it is alive). Each thread
    /// lists its own children, and the daemon spawns from a dedicated thread.
    static func children(of pid: pid_t) -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task -> [pid_t] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { pid_t($0) }
        }
    }

    @Test func sigtermDrainsAndLeavesNoProcess() async throws {
        try await Self.withDaemon { daemon, data, _ in
            let brokers = Self.children(of: daemon.pid)
            #expect(brokers.count == 1)
            daemon.signal(SIGTERM)
            #expect(await daemon.wait() == .exited(0))
            for broker in brokers { #expect(await ProcessProbe.waitUntilGone(broker, within: .seconds(5))) }
            // The drain left a clean state: the operator file stays for the next start.
            #expect(FileManager.default.fileExists(atPath: data + "/operator.json"))
        }
    }

    @Test func killedDaemonTakesItsBrokerWithIt() async throws {
        try await Self.withDaemon { daemon, _, _ in
            let brokers = Self.children(of: daemon.pid)
            #expect(brokers.count == 1)
            daemon.signal(SIGKILL)
            _ = await daemon.wait()
            // The parent-death signal: no orphaned broker keeps the port and the files.
            for broker in brokers { #expect(await ProcessProbe.waitUntilGone(broker, within: .seconds(5))) }
        }
    }

    @Test func cliCommandsAgainstTheRealDaemon() async throws {
        try await Self.withDaemon { _, data, port in
            let output = OutputCapture()
            func vgw(_ args: String...) async -> Int32 {
                await VGWCommand.run(args + ["-d", data], out: { output.add($0) }, err: { output.add("ERR " + $0) })
            }
            #expect(await vgw("provider", "create", "acme") == 0)
            #expect(output.last == "virtual gateway acme is running")
            #expect(await vgw("provider", "create", "acme") == 1)
            #expect(output.last?.contains("already exists (already_exists)") == true)
            #expect(await vgw("client", "add", "acme", "thermostat") == 0)
            #expect(output.last?.contains("password:") == true)
            #expect(await vgw("provider", "list") == 0)
            let table = output.last ?? ""
            #expect(table.hasPrefix("PROVIDER"))
            #expect(table.contains("acme") && table.contains("running"))
            #expect(await vgw("provider", "list", "--json") == 0)
            let json = try JSONSerialization.jsonObject(with: Data((output.last ?? "").utf8)) as? [String: Any]
            #expect((json?["providers"] as? [[String: Any]])?.first?["provider"] as? String == "acme")
            #expect(await vgw("provider", "stop", "acme") == 0)
            #expect(await vgw("provider", "alive", "acme") == 0)
            #expect(output.last == "acme: stopped")
            #expect(await vgw("status", "--json") == 0)
            #expect(output.last?.contains("\"port\" : \(port)") == true)
            #expect(await vgw("provider", "show", "nobody") == 1)
            #expect(await vgw("provider", "create", "Bad/Id") == 1)
            #expect(output.last?.contains("invalid_argument") == true)
            #expect(await vgw("provider", "frobnicate") == 2)
            #expect(await vgw("provider", "--help") == 0)
            #expect(output.last?.contains("create") == true)
            #expect(await vgw("request", "vgw.list") == 0)
            #expect(output.last?.contains("\"ok\":true") == true)
        }
    }

    @Test func secondDaemonOnTheSameDirectoryRefuses() async throws {
        try await Self.withDaemon { _, data, _ in
            var configuration = GatewayConfiguration(dataDirectory: data)
            configuration.port = try Ports.freePort(host: "127.0.0.1")
            let second = GatewayDaemon(configuration: configuration)
            await #expect(throws: VGWError.self) { try await second.start() }
        }
    }

    @Test func takenDefaultPortFallsBackToAFreeOne() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgw-fallback-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let blocker = try TCPListener()
        var configuration = GatewayConfiguration(dataDirectory: directory)
        configuration.port = blocker.port
        let daemon = GatewayDaemon(configuration: configuration)
        try await daemon.start()
        let chosen = daemon.port
        await daemon.stop()
        #expect(chosen != nil && chosen != blocker.port)
        // An explicit port (no fallback) is refused with a clear error instead.
        configuration.portFallback = false
        let strict = GatewayDaemon(configuration: configuration)
        await #expect(throws: VGWError.self) { try await strict.start() }
    }
}

/// Lines written by a command, for assertions.
final class OutputCapture: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var last: String? { lines.withLock { $0.last } }
    var all: [String] { lines.withLock { $0 } }
}
