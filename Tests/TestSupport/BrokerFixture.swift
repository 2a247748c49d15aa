import Broker
import Crypto
import Foundation
import Supervisor
import Support

/// A real supervised mosquitto on a free loopback port in a temporary directory.
///
/// Only the scoped `withBroker` helpers create one, so that the broker is always stopped
/// and its directory removed, also when the test body throws.
///
/// The supervisor restarts a broker that dies by itself. A test that needs the broker to
/// stay down says so with `crash()` or `stop()`, and brings it back with `start()`.
public struct BrokerFixture: Sendable {
    /// The client `withBroker(anonymous: false)` creates with `mosquitto_ctrl dynsec init`;
    /// it may administer the plugin but not publish on ordinary topics.
    public static let adminUser = "admin"
    public static let adminPassword = "admin-secret"
    /// How many ports a start tries when mosquitto finds its port taken by someone else.
    public static let portAttempts = 3

    /// A dynamic-security client added next to the admin, with a role of its own that
    /// holds exactly `acls` (the default access denies everything else).
    public struct User: Sendable {
        public var username: String
        public var password: String
        public var acls: [ACL]

        public init(_ username: String, password: String, acls: [ACL] = []) {
            self.username = username
            self.password = password
            self.acls = acls
        }

        /// The name of the user's own role.
        public var rolename: String { "user-\(username)" }
    }

    public let supervisor: BrokerSupervisor
    public var configuration: BrokerConfiguration { supervisor.configuration }
    public var host: String { configuration.listeners[0].host }
    public var port: UInt16 { configuration.listeners[0].port }
    public var dataDirectory: String { configuration.dataDirectory }

    /// A broker with anonymous access and no plugin (`anonymous: true`), or one with
    /// dynamic security, the admin client `adminUser` and `users` (`anonymous: false`).
    /// `meterPlugin` (a path to libvgw_meter.so) loads the meter before dynamic security.
    public static func withBroker<T>(
        anonymous: Bool = true, users: [User] = [], meterPlugin: String? = nil,
        tls: BrokerConfiguration.Listener.TLS? = nil, prepare: BrokerSupervisor.Prepare? = nil,
        _ body: (BrokerFixture) async throws -> T
    ) async throws -> T {
        if anonymous {
            guard users.isEmpty else { throw VGWError(.config, "users need a broker with anonymous: false") }
            return try await run(
                plugin: false, meterPlugin: meterPlugin, tls: tls, prepare: prepare, setUp: { _ in }, body)
        }
        return try await run(
            plugin: true, meterPlugin: meterPlugin, tls: tls, prepare: prepare,
            setUp: { config in
                let status = try await runTool(
                    "mosquitto_ctrl", ["dynsec", "init", config.dynsecFile, adminUser, adminPassword])
                guard status == .exited(0) else {
                    throw VGWError(.broker, "mosquitto_ctrl dynsec init failed: \(status)")
                }
                if !users.isEmpty { try addUsers(users, to: config.dynsecFile) }
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
        plugin: Bool, meterPlugin: String? = nil, tls: BrokerConfiguration.Listener.TLS? = nil,
        prepare: BrokerSupervisor.Prepare?,
        setUp: (BrokerConfiguration) async throws -> Void,
        _ body: (BrokerFixture) async throws -> T
    ) async throws -> T {
        try await withTemporaryDirectory(prefix: "vgw-broker") { dir in
            func configuration(port: UInt16) -> BrokerConfiguration {
                var configuration = BrokerConfiguration(
                    port: port, directory: dir.path,
                    dynamicSecurityPlugin: plugin ? BrokerConfiguration.debianDynamicSecurityPlugin : nil,
                    allowAnonymous: !plugin, meterPlugin: meterPlugin)
                configuration.listeners[0].tls = tls
                return configuration
            }
            // The files setUp writes live in the directory and do not depend on the port.
            try await setUp(configuration(port: 1883))
            let supervisor = try await startOnFreePort(configuration: configuration, prepare: prepare)
            let fixture = BrokerFixture(supervisor: supervisor)
            do {
                let result = try await body(fixture)
                await fixture.stop()
                return result
            } catch {
                await fixture.stop()
                throw error
            }
        }
    }

    /// Starts a supervised broker on a port that was free a moment ago. Another process
    /// (a parallel suite's broker) may take that port before mosquitto binds it; then the
    /// broker exits with "Address already in use" and this tries a new port, at most
    /// `portAttempts` times in all.
    private static func startOnFreePort(
        configuration: (UInt16) -> BrokerConfiguration, prepare: BrokerSupervisor.Prepare?
    ) async throws -> BrokerSupervisor {
        var attempt = 1
        while true {
            let config = configuration(try Ports.freePort())
            let logOffset = fileSize(config.logFile)
            let supervisor = BrokerSupervisor(configuration: config, prepare: prepare)
            do {
                try await supervisor.start()
                return supervisor
            } catch {
                await supervisor.stop()
                let log = readLog(config.logFile, from: logOffset)
                if log.contains("Address already in use"), attempt < portAttempts {
                    attempt += 1
                    continue
                }
                let lines = meaningfulLines(log)
                throw VGWError(
                    .broker,
                    "mosquitto did not start on \(config.listeners[0].host):\(config.listeners[0].port) "
                        + "(attempt \(attempt) of \(portAttempts)): "
                        + (lines.isEmpty ? "(no log output)" : lines.joined(separator: " / ")),
                    cause: SendableDescription("\(error)"))
            }
        }
    }

    /// The log without the lines that say nothing about a failure: the warning every
    /// broker started as root prints first, and the version banner.
    static func meaningfulLines(_ log: String, limit: Int = 20) -> [String] {
        let noise = ["should not be run as root", "starting", "Config loaded from"]
        let lines = log.split(separator: "\n").map(String.init).filter { line in
            !noise.contains { line.contains($0) }
        }
        return Array(lines.suffix(limit))
    }

    private static func fileSize(_ path: String) -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
    }

    private static func readLog(_ path: String, from offset: UInt64 = 0) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    // MARK: - Life cycle, for tests of clients that must survive a broker's troubles

    /// Everything the broker logged so far, all of its runs.
    public var log: String { Self.readLog(configuration.logFile) }

    /// Kills the broker with SIGKILL, as a crash would (no clean shutdown, no DISCONNECT),
    /// and keeps it down until `start()`: the supervisor does not restart it.
    public func crash() async {
        if let pid = await supervisor.pid {
            // Frozen first, so the SIGTERM of `stop` stays pending and SIGKILL ends it.
            kill(pid, SIGSTOP)
        }
        await supervisor.stop(grace: .zero)
    }

    /// Stops the broker cleanly (SIGTERM); it stays down until `start()`.
    public func stop() async {
        await resume()
        await supervisor.stop()
    }

    /// Starts the broker again, on the same port and from the same directory, and returns
    /// once it accepts connections.
    public func start() async throws {
        try await supervisor.start()
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    public func pause() async {
        if let pid = await supervisor.pid { kill(pid, SIGSTOP) }
    }

    /// Lets a paused broker go on (SIGCONT). `stop()` and the end of `withBroker` do it too.
    public func resume() async {
        if let pid = await supervisor.pid { kill(pid, SIGCONT) }
    }

    // MARK: - Dynamic security

    /// Sets a client's password in dynamic-security.json. The plugin reads the file only
    /// when the broker starts (and rewrites it on its own changes), so call this while the
    /// broker is down (`crash()` or `stop()`), then `start()`.
    public func setPassword(user: String, password: String) throws {
        let path = configuration.dynsecFile
        var root = try Self.readJSON(path)
        var clients = root["clients"] as? [[String: Any]] ?? []
        guard let index = clients.firstIndex(where: { $0["username"] as? String == user }) else {
            throw VGWError(.notFound, "no client \(user) in \(path)")
        }
        let hash = try PasswordHash.make(password: password)
        clients[index]["password"] = hash.hash
        clients[index]["salt"] = hash.salt
        clients[index]["iterations"] = hash.iterations
        root["clients"] = clients
        try Self.writeJSON(root, to: path)
    }

    /// Adds each user as a client with a role of its own.
    private static func addUsers(_ users: [User], to path: String) throws {
        var root = try readJSON(path)
        let encoder = JSONEncoder()
        func object(_ value: some Encodable) throws -> Any {
            try JSONSerialization.jsonObject(with: try encoder.encode(value))
        }
        var clients = root["clients"] as? [Any] ?? []
        var roles = root["roles"] as? [Any] ?? []
        for user in users {
            let client = DynSecConfig.Client(
                username: user.username, clientid: nil, password: try PasswordHash.make(password: user.password),
                roles: [user.rolename])
            clients.append(try object(client))
            roles.append(["rolename": user.rolename, "acls": try object(user.acls)])
        }
        root["clients"] = clients
        root["roles"] = roles
        try writeJSON(root, to: path)
    }

    private static func readJSON(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VGWError(.config, "\(path) is not a JSON object")
        }
        return root
    }

    private static func writeJSON(_ root: [String: Any], to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: path, mode: 0o600)
    }

    // MARK: - Tools

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
