import MQTT
import Support
import Synchronization

#if canImport(FoundationEssentials)
    // Not all of Foundation: it would link ICU into a static service (see Support's Logger).
    import FoundationEssentials
#else
    import Foundation
#endif

/// A message received by a service, its topic relative to the provider's namespace.
public struct ServiceMessage: Sendable, Equatable {
    /// The topic without the `vgw/<provider>/` prefix: `cmd/ping`, not `vgw/acme/cmd/ping`.
    public var topic: String
    public var payload: [UInt8]
    public var retain: Bool
    public var qos: QoS

    public init(topic: String, payload: [UInt8], retain: Bool = false, qos: QoS = .atMostOnce) {
        self.topic = topic
        self.payload = payload
        self.retain = retain
        self.qos = qos
    }

    /// The payload as UTF-8 text (invalid sequences repaired).
    public var payloadString: String { String(decoding: payload, as: UTF8.self) }
}

/// A connection of one service to the gateway's broker, confined to its provider's namespace.
///
/// It wraps one `MQTTClient` configured the way vgwd expects a service to behave:
/// MQTT 5 with the bound client id, a persistent session (so that subscriptions and queued
/// QoS 1 messages survive a reconnect), automatic reconnection with backoff, and a retained
/// will `false` on `<prefix>_service/<bundle>/online` so that everyone sees a service die.
///
/// The broker drops the connection more often than one would think: dynamic security
/// disconnects a client whenever its role's ACLs change, and the broker itself may be
/// restarted. The client reconnects by itself; this class keeps the subscription streams
/// open across that (they are fed from the client's single message stream, which lives as
/// long as the client), and sets the online flag again after each reconnect, because the
/// broker published the will when the connection dropped.
public final class VGWService: Sendable {
    public let environment: ServiceEnvironment
    /// The underlying client, for what this class does not wrap. Its `messages` and
    /// `events` streams are already consumed here; use `subscribe` instead.
    public let client: MQTTClient
    /// The absolute topic of the retained online flag.
    public let onlineTopic: String

    private let subscribers = Mutex<[UUID: Subscriber]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let refusal: AsyncStream<VGWError>.Continuation
    /// Yields once if the broker refuses a reconnect (credentials revoked): the client has
    /// then stopped for good, and only a restart with a new identity helps.
    let refusals: AsyncStream<VGWError>
    private let logger = Logger("service")

    private struct Subscriber {
        var filter: String
        var continuation: AsyncStream<ServiceMessage>.Continuation
    }

    /// The bundle's private persistent directory (`VGW_STATE_DIR`, also `HOME`).
    public var stateDirectory: URL { environment.stateDirectory }
    /// The provider's namespace, `vgw/<provider>/`.
    public var topicPrefix: String { environment.topicPrefix }

    /// The configuration `connect` uses: exposed so that tests and documentation show it.
    public static func configuration(for environment: ServiceEnvironment) -> MQTTConfiguration {
        MQTTConfiguration(
            host: environment.host, port: environment.port, clientID: environment.clientID,
            username: environment.username, password: environment.password, protocolVersion: .v5,
            cleanStart: false, sessionExpiryInterval: 3600,
            will: MQTTWill(
                topic: onlineTopic(environment), payload: Array("false".utf8), qos: .atLeastOnce, retain: true),
            reconnect: true, reconnectDelayMin: 1, reconnectDelayMax: 30)
    }

    static func onlineTopic(_ environment: ServiceEnvironment) -> String {
        environment.topicPrefix + "_service/" + environment.bundle + "/online"
    }

    private init(environment: ServiceEnvironment, client: MQTTClient) {
        self.environment = environment
        self.client = client
        self.onlineTopic = Self.onlineTopic(environment)
        (refusals, refusal) = AsyncStream.makeStream(of: VGWError.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Connects with the environment of this process (`ServiceEnvironment.current()`).
    public static func connect() async throws -> VGWService {
        try await connect(environment: ServiceEnvironment.current())
    }

    /// Connects, starts routing messages and connection events, and sets the online flag.
    public static func connect(environment: ServiceEnvironment) async throws -> VGWService {
        let client = try MQTTClient(configuration(for: environment))
        let service = VGWService(environment: environment, client: client)
        // Consumers start before the connection so that no message or event is missed.
        service.startRouting()
        do {
            try await client.connect()
            try await service.setOnline(true)
        } catch {
            await service.disconnect()
            throw error
        }
        return service
    }

    private func startRouting() {
        let messages = client.messages
        let events = client.events
        let router = Task { [weak self] in
            for await message in messages {
                guard let self else { return }
                self.route(message)
            }
        }
        let watcher = Task { [weak self] in
            var first = true
            for await event in events {
                guard let self else { return }
                switch event {
                case .connected(let sessionPresent):
                    // The first CONNACK is handled by `connect()` itself.
                    if first {
                        first = false
                        continue
                    }
                    self.logger.info("reconnected", ["sessionPresent": sessionPresent])
                    // The will ("false") was published when the connection dropped.
                    do { try await self.setOnline(true) } catch {
                        self.logger.warning("cannot set the online flag", ["error": "\(error)"])
                    }
                case .disconnected(let code):
                    if code != 0 { self.logger.warning("connection lost; reconnecting", ["code": code]) }
                case .connectionRefused(let code):
                    self.logger.error("the broker refused the reconnect", ["reason": "\(code)"])
                    self.refusal.yield(VGWError(.mqtt, "connection refused: \(code)", cause: code))
                }
            }
        }
        tasks.withLock { $0 = [router, watcher] }
    }

    /// Hands a message to every subscription stream whose filter matches it.
    private func route(_ message: MQTTMessage) {
        guard let topic = ServiceTopics.relative(message.topic, prefix: environment.topicPrefix) else { return }
        let delivered = ServiceMessage(
            topic: topic, payload: message.payload, retain: message.retain, qos: message.qos)
        let targets = subscribers.withLock { subscribers in
            subscribers.values.filter { Topic.matches(filter: $0.filter, topic: message.topic) }.map(\.continuation)
        }
        for continuation in targets { continuation.yield(delivered) }
    }

    private func setOnline(_ online: Bool) async throws {
        let code = try await client.publish(
            topic: onlineTopic, string: online ? "true" : "false", qos: .atLeastOnce, retain: true)
        guard MQTTClient.isSuccess(code) else {
            throw VGWError(.forbidden, "the broker refused the online flag (reason code \(code))")
        }
    }

    // MARK: Publish and subscribe

    /// Publishes `payload` on `topic`, relative to the namespace (`living/temp` goes to
    /// `vgw/<provider>/living/temp`). With QoS 1 (the default) it waits for the broker's
    /// acknowledgement and throws `.forbidden` if the broker refused the message.
    public func publish(
        _ topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false
    ) async throws {
        let name = try ServiceTopics.name(topic, prefix: environment.topicPrefix)
        let code = try await client.publish(topic: name, payload: payload, qos: qos, retain: retain)
        guard MQTTClient.isSuccess(code) else {
            throw VGWError(.forbidden, "the broker refused the message on \(topic) (reason code \(code))")
        }
    }

    /// Publishes a UTF-8 string.
    public func publish(_ topic: String, _ payload: String, qos: QoS = .atLeastOnce, retain: Bool = false)
        async throws
    {
        try await publish(topic, payload: Array(payload.utf8), qos: qos, retain: retain)
    }

    /// Subscribes to `filter`, relative to the namespace (`cmd/#`), and returns the matching
    /// messages with relative topics.
    ///
    /// The stream survives reconnections. It ends when the service disconnects; ending the
    /// iteration (or dropping the stream) unsubscribes unless another stream uses the same
    /// filter. Buffering is unbounded, as in `MQTTClient`: a consumer must keep up.
    public func subscribe(_ filter: String, qos: QoS = .atLeastOnce) async throws -> AsyncStream<ServiceMessage> {
        let full = try ServiceTopics.filter(filter, prefix: environment.topicPrefix)
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: ServiceMessage.self)
        // Registered before SUBSCRIBE goes out: retained messages may arrive before the SUBACK.
        subscribers.withLock { $0[id] = Subscriber(filter: full, continuation: continuation) }
        continuation.onTermination = { [weak self] _ in self?.dropSubscriber(id) }
        let code: UInt8
        do {
            code = try await client.subscribe(full, qos: qos)
        } catch {
            subscribers.withLock { _ = $0.removeValue(forKey: id) }
            continuation.finish()
            throw error
        }
        guard !MQTTClient.isRefusal(code) else {
            subscribers.withLock { _ = $0.removeValue(forKey: id) }
            continuation.finish()
            throw VGWError(.forbidden, "the broker refused the subscription to \(filter) (reason code \(code))")
        }
        return stream
    }

    private func dropSubscriber(_ id: UUID) {
        let orphaned = subscribers.withLock { subscribers -> String? in
            guard let gone = subscribers.removeValue(forKey: id) else { return nil }
            return subscribers.values.contains { $0.filter == gone.filter } ? nil : gone.filter
        }
        guard let orphaned, client.isConnected else { return }
        let client = self.client
        Task { try? await client.unsubscribe(orphaned) }
    }

    // MARK: Shutdown

    /// Clears the online flag, disconnects cleanly (so the broker does not publish the
    /// will) and ends every subscription stream. Idempotent.
    public func disconnect() async {
        if client.isConnected {
            do { try await setOnline(false) } catch {
                logger.warning("cannot clear the online flag", ["error": "\(error)"])
            }
        }
        await client.disconnect()
        let continuations = subscribers.withLock { subscribers in
            defer { subscribers.removeAll() }
            return subscribers.values.map(\.continuation)
        }
        for continuation in continuations { continuation.finish() }
        for task in tasks.withLock({ $0 }) { task.cancel() }
        refusal.finish()
    }
}
