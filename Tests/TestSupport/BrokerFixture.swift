import Broker
import Foundation
import Supervisor
import Support

/// A real supervised mosquitto on a free loopback port in a temporary directory.
///
/// Only the scoped `withBroker` helpers create one, so that the broker is always stopped
/// and its directory removed, also when the test body throws.
public struct BrokerFixture: Sendable {
    /// The client `withBroker(anonymous: false)` creates with `mosquitto_ctrl dynsec init`;
    /// it may administer the plugin but not publish on ordinary topics.
    public static let adminUser = "admin"
    public static let adminPassword = "admin-secret"

    public let supervisor: BrokerSupervisor
    public var configuration: BrokerConfiguration { supervisor.configuration }
    public var host: String { configuration.listeners[0].host }
    public var port: UInt16 { configuration.listeners[0].port }
    public var dataDirectory: String { configuration.dataDirectory }

    /// A broker with anonymous access and no plugin (`anonymous: true`), or one with
    /// dynamic security and the admin client `adminUser` only (`anonymous: false`).
    public static func withBroker<T>(
        anonymous: Bool = true, prepare: BrokerSupervisor.Prepare? = nil, _ body: (BrokerFixture) async throws -> T
    ) async throws -> T {
        if anonymous {
            return try await run(plugin: false, prepare: prepare, setUp: { _ in }, body)
        }
        return try await run(
            plugin: true, prepare: prepare,
            setUp: { config in
                let status = try await runTool(
                    "mosquitto_ctrl", ["dynsec", "init", config.dynsecFile, adminUser, adminPassword])
                guard status == .exited(0) else {
                    throw VGWError(.broker, "mosquitto_ctrl dynsec init failed: \(status)")
                }
            }, body)
    }

    /// A broker with dynamic security starting from the given dynamic-security.json text.
    public static func withBroker<T>(
        dynamicSecurityJSON: String, prepare: BrokerSupervisor.Prepare? = nil, _ body: (BrokerFixture) async throws -> T
    ) async throws -> T {
        try await run(
            plugin: true, prepare: prepare,
            setUp: { config in
                try dynamicSecurityJSON.write(toFile: config.dynsecFile, atomically: true, encoding: .utf8)
            }, body)
    }

    private static func run<T>(
        plugin: Bool, prepare: BrokerSupervisor.Prepare?, setUp: (BrokerConfiguration) async throws -> Void,
        _ body: (BrokerFixture) async throws -> T
    ) async throws -> T {
        try await withTemporaryDirectory(prefix: "vgw-broker") { dir in
            let config = BrokerConfiguration(
                port: try Ports.freePort(), directory: dir.path,
                dynamicSecurityPlugin: plugin ? BrokerConfiguration.debianDynamicSecurityPlugin : nil,
                allowAnonymous: !plugin)
            try await setUp(config)
            let supervisor = BrokerSupervisor(configuration: config, prepare: prepare)
            do {
                try await supervisor.start()
                let result = try await body(BrokerFixture(supervisor: supervisor))
                await supervisor.stop()
                return result
            } catch {
                await supervisor.stop()
                throw error
            }
        }
    }

    /// Runs a tool of mosquitto-clients (`mosquitto_pub`, `mosquitto_ctrl`, ...) with a
    /// 10 s bound, its output discarded unless `output` names a file.
    public static func runTool(
        _ tool: String, _ arguments: [String], output: Output = .null
    ) async throws -> ExitStatus {
        let child = try await ChildProcess.spawn(
            SpawnRequest(executable: "/usr/bin/" + tool, arguments: arguments, stdout: output, stderr: output))
        let watchdog = Task {
            try await Task.sleep(for: .seconds(10))
            child.signal(SIGKILL)
        }
        defer { watchdog.cancel() }
        return await child.wait()
    }

    /// Publishes one message with mosquitto_pub; its exit code says whether the broker accepted the connection.
    public func publish(
        topic: String = "test/topic", message: String = "hello", username: String? = nil, password: String? = nil
    ) async throws -> ExitStatus {
        var arguments = ["-h", host, "-p", String(port), "-t", topic, "-m", message]
        if let username { arguments += ["-u", username] }
        if let password { arguments += ["-P", password] }
        return try await Self.runTool("mosquitto_pub", arguments)
    }
}
