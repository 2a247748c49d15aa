import Broker
import Foundation
import Gateway
import Supervisor
import Support

/// A temporary directory removed by `remove()` (the bench calls it on every path out).
struct TempDirectory: Sendable {
    let path: String

    init(_ prefix: String) throws {
        let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
        var template = Array((base + "\(prefix)-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw VGWError(.io, "cannot create a temporary directory")
        }
        path = String(cString: made)
        Cleanup.track(directory: path)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
        Cleanup.forget(directory: path)
    }
}

/// Waits (bounded) until something listens on the port.
func waitForListener(port: UInt16, within limit: Duration = .seconds(15)) async throws {
    let deadline = ContinuousClock.now + limit
    while !Ports.acceptsConnections(host: "127.0.0.1", port: port) {
        guard ContinuousClock.now < deadline else { throw VGWError(.timeout, "nothing listens on port \(port)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Mosquitto with `allow_anonymous true`, no plugin, no ACLs: the baseline.
struct RawBroker: Sendable {
    let process: ChildProcess
    let port: UInt16
    let directory: TempDirectory

    static func start() async throws -> RawBroker {
        let directory = try TempDirectory("vgw-bench-raw")
        do {
            let port = try Ports.freePort(host: "127.0.0.1")
            // The same options as the gateway's broker, minus the plugin (and the persistence
            // file, which neither broker touches on this path but whose exit-time write could
            // race the directory's removal).
            let configuration = BrokerConfiguration(
                port: port, directory: directory.path, dynamicSecurityPlugin: nil, allowAnonymous: true,
                persistence: false)
            try configuration.render().write(
                toFile: configuration.configurationFile, atomically: true, encoding: .utf8)
            let process = try await ChildProcess.spawn(
                SpawnRequest(
                    executable: configuration.mosquittoPath, arguments: ["-c", configuration.configurationFile],
                    stdout: .null, stderr: .file(path: configuration.logFile)))
            Cleanup.track(pid: process.pid)
            let broker = RawBroker(process: process, port: port, directory: directory)
            do {
                try await waitForListener(port: port)
            } catch {
                await broker.stop()
                throw error
            }
            return broker
        } catch {
            directory.remove()
            throw error
        }
    }

    func stop() async {
        _ = await process.terminate(grace: .seconds(5))
        Cleanup.forget(pid: process.pid)
        directory.remove()
    }
}

/// The real `vgwd` binary as a separate process, so that its RSS is its own.
struct DaemonProcess: Sendable {
    let process: ChildProcess
    let port: UInt16
    let directory: TempDirectory
    let credentials: OperatorCredentials

    var logFile: String { directory.path + "/vgwd.log" }

    static func start(executable: String, home: String = "bench", extraArguments: [String] = []) async throws
        -> DaemonProcess
    {
        let directory = try TempDirectory("vgw-bench-gw")
        // Services run under their provider's uid and must traverse it to their bundle (vgwd
        // keeps everything inside private); mkdtemp made it 0700.
        chmod(directory.path, 0o711)
        let logFile = directory.path + "/vgwd.log"
        let data = directory.path + "/data"
        do {
            let port = try Ports.freePort(host: "127.0.0.1")
            let process = try await ChildProcess.spawn(
                SpawnRequest(
                    executable: executable,
                    arguments: ["--data-dir", data, "--port", "\(port)", "--home", home, "--log-level", "warn"]
                        + extraArguments,
                    environment: ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    stdout: .file(path: logFile), stderr: .file(path: logFile)))
            Cleanup.track(pid: process.pid)
            do {
                // Ready when the operator file names this port and the broker accepts connections.
                let deadline = ContinuousClock.now + .seconds(30)
                var credentials: OperatorCredentials?
                while credentials == nil {
                    if let exit = process.exitStatus {
                        throw VGWError(.spawn, "vgwd exited at start (\(exit)); see \(logFile)")
                    }
                    guard ContinuousClock.now < deadline else { throw VGWError(.timeout, "vgwd did not start") }
                    if let loaded = try? OperatorCredentials.load(from: DataDirectory(data).operatorCredentials),
                        loaded.port == port, Ports.acceptsConnections(host: "127.0.0.1", port: port)
                    {
                        credentials = loaded
                    } else {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                return DaemonProcess(process: process, port: port, directory: directory, credentials: credentials!)
            } catch {
                _ = await process.terminate(grace: .seconds(5))
                throw error
            }
        } catch {
            directory.remove()
            throw error
        }
    }

    /// The supervised broker: vgwd's `mosquitto` child.
    var brokerPid: pid_t? { ProcStats.child(of: process.pid, named: "mosquitto") }

    /// SIGTERM (vgwd drains services and stops its broker), SIGKILL after the grace.
    func stop() async {
        _ = await process.terminate(grace: .seconds(10))
        Cleanup.forget(pid: process.pid)
        directory.remove()
    }
}
