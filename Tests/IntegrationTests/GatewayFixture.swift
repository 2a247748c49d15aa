import Broker
import CLI
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Synchronization
import Testing

/// A real `vgwd` (in-process daemon, real Mosquitto child, real SQLite file) on a free
/// loopback port in a temporary directory, removed with everything it started at the end
/// of the scope, whether the body passes, fails or throws.
struct GatewayFixture {
    let daemon: GatewayDaemon
    let directory: String
    let port: UInt16
    let admin: ManagementClient

    static func with<T>(
        directory existing: String? = nil, configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ body: (GatewayFixture) async throws -> T
    ) async throws -> T {
        let directory =
            existing
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "vgw-it-\(UUID().uuidString.prefix(8))"
            ).path
        defer { if existing == nil { try? FileManager.default.removeItem(atPath: directory) } }
        let port = try Ports.freePort(host: "127.0.0.1")
        return try await run(directory: directory, port: port, configure: configure, body)
    }

    /// Starts a daemon on `directory` and `port` (a restart test reuses both).
    static func run<T>(
        directory: String, port: UInt16, configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ body: (GatewayFixture) async throws -> T
    ) async throws -> T {
        var configuration = GatewayConfiguration(dataDirectory: directory)
        configuration.port = port
        configuration.portFallback = false
        configuration.homeID = "test-home"
        // Daemons of parallel tests must not share service uids.
        configuration.serviceUIDBase = uid_t(300_000 + Int.random(in: 0..<10_000) * 100)
        configure(&configuration)
        let daemon = GatewayDaemon(configuration: configuration)
        try await daemon.start()
        do {
            let credentials = try OperatorCredentials.load(from: DataDirectory(directory).operatorCredentials)
            let admin = try await ManagementClient.connect(
                host: "127.0.0.1", port: port, username: credentials.username, password: credentials.password,
                reconnect: true)
            let fixture = GatewayFixture(daemon: daemon, directory: directory, port: port, admin: admin)
            do {
                let result = try await body(fixture)
                await admin.close()
                await daemon.stop()
                return result
            } catch {
                await admin.close()
                throw error
            }
        } catch {
            await daemon.stop()
            throw error
        }
    }

    /// Creates a provider's VGW.
    func createProvider(_ id: String) async throws {
        _ = try await admin.call("vgw.create", ["provider": .string(id)])
    }

    /// Issues credentials for a client of `provider`.
    func addClient(_ provider: String, _ name: String) async throws -> IssuedCredentials {
        try await admin.call("client.add", ["provider": .string(provider), "name": .string(name)])
            .decode(IssuedCredentials.self)
    }

    /// A connected MQTT client with issued credentials (its own client id unless overridden).
    func connect(
        _ credentials: IssuedCredentials, clientID: String? = nil, password: String? = nil,
        version: MQTTProtocolVersion = .v5, will: MQTTWill? = nil, reconnect: Bool = false
    ) async throws -> MQTTClient {
        try await MQTTClient.connected(
            MQTTConfiguration(
                host: "127.0.0.1", port: Int(port), clientID: clientID ?? credentials.clientId,
                username: credentials.username, password: password ?? credentials.password, protocolVersion: version,
                will: will, reconnect: reconnect, operationTimeout: .seconds(5)))
    }

    /// A management client speaking for a provider, on `mgmt/<p>/req`.
    func providerManagement(_ credentials: IssuedCredentials) async throws -> ManagementClient {
        try await ManagementClient.connect(
            host: "127.0.0.1", port: port, username: credentials.username, password: credentials.password,
            clientID: credentials.clientId, target: try ProviderID(credentials.provider), timeout: .seconds(5))
    }
}

/// Counts matching messages for `Inbox.more(than:on:)`.
final class Counter: Sendable {
    private let state: Mutex<Int>
    private let target: Int
    init(target: Int, already: Int) {
        self.target = target
        state = Mutex(already)
    }
    func hit() -> Bool {
        state.withLock {
            $0 += 1
            return $0 >= target
        }
    }
}

/// Collects what a client receives, so a test can say "nothing arrived before the sentinel".
actor Inbox {
    typealias Predicate = @Sendable (MQTTMessage) -> Bool
    private(set) var received: [MQTTMessage] = []
    private var waiters: [UUID: (predicate: Predicate, continuation: CheckedContinuation<MQTTMessage, any Error>)] = [:]
    private var task: Task<Void, Never>?

    init(_ client: MQTTClient) {
        let messages = client.messages
        task = nil
        Task { await self.start(messages) }
    }

    private func start(_ messages: AsyncStream<MQTTMessage>) {
        task = Task { [weak self] in
            for await message in messages { await self?.add(message) }
        }
    }

    private func add(_ message: MQTTMessage) {
        received.append(message)
        for (id, waiter) in waiters where waiter.predicate(message) {
            waiters[id] = nil
            waiter.continuation.resume(returning: message)
        }
    }

    /// Waits (bounded) for a message matching `predicate`, including one already received.
    func next(timeout: Duration = .seconds(5), where predicate: @escaping Predicate) async throws -> MQTTMessage {
        if let message = received.first(where: predicate) { return message }
        let id = UUID()
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.expire(id, timeout)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            waiters[id] = (predicate, continuation)
        }
    }

    func message(on topic: String, timeout: Duration = .seconds(5)) async throws -> MQTTMessage {
        try await next(timeout: timeout) { $0.topic == topic }
    }

    private func expire(_ id: UUID, _ timeout: Duration) {
        waiters.removeValue(forKey: id)?.continuation.resume(
            throwing: VGWError(.timeout, "no matching message within \(timeout)"))
    }

    func topics() -> [String] { received.map(\.topic) }

    func count(on topic: String) -> Int { received.filter { $0.topic == topic }.count }

    /// Waits (bounded) until more than `count` messages arrived on `topic`.
    func more(than count: Int, on topic: String, timeout: Duration = .seconds(10)) async throws {
        let id = UUID()
        guard self.count(on: topic) <= count else { return }
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.expire(id, timeout)
        }
        defer { timer.cancel() }
        let target = count + 1
        _ = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<MQTTMessage, any Error>) in
            let seen = Counter(target: target, already: self.count(on: topic))
            waiters[id] = ({ message in message.topic == topic && seen.hit() }, continuation)
        }
    }
}
