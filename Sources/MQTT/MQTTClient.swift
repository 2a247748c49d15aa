import CMosquitto
import Support
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The raw `mosquitto *`. libmosquitto's API is thread-safe once `mosquitto_loop_start`
/// runs the network thread (it locks internally), so sharing the pointer is sound.
struct MosquittoHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// The one asynchronous MQTT client of the project, over libmosquitto.
///
/// libmosquitto runs its own network thread (`mosquitto_loop_start`); its callbacks only
/// hand results over (resume a continuation, yield into a stream) so that no work of ours
/// runs on, or blocks, that thread. Every awaited operation is bounded by
/// `MQTTConfiguration.operationTimeout`.
///
/// Reconnection: libmosquitto reconnects by itself with exponential backoff; after a
/// reconnect without a session the client re-sends its granted subscriptions. After the
/// few errors that end libmosquitto's loop for good (a protocol error from the broker),
/// the client restarts the loop itself. A refused CONNACK stops the client.
///
/// Life cycle: `init` → `connect()` → use → `disconnect()`. After `disconnect()` the
/// streams are finished and the client cannot be reused. Dropping the client without
/// `disconnect()` is allowed: `deinit` stops the network thread before freeing anything.
public final class MQTTClient: Sendable {
    public let configuration: MQTTConfiguration

    /// Received messages, in arrival order. Single consumer. Buffering is unbounded:
    /// libmosquitto cannot apply back-pressure to the broker per consumer, and dropping
    /// messages silently would be worse; a consumer must keep up.
    public let messages: AsyncStream<MQTTMessage>

    /// Connection changes (connected, disconnected, refused). Single consumer, unbounded.
    public let events: AsyncStream<MQTTEvent>

    private let handle: MosquittoHandle
    private let box: CallbackBox
    private let logger = Logger("mqtt")

    public init(_ configuration: MQTTConfiguration) throws(VGWError) {
        try Library.check(Library.initialized, "initialise libmosquitto")
        self.configuration = configuration
        let (messages, messagesContinuation) = AsyncStream.makeStream(of: MQTTMessage.self)
        let (events, eventsContinuation) = AsyncStream.makeStream(of: MQTTEvent.self)
        self.messages = messages
        self.events = events
        let box = CallbackBox(
            messages: messagesContinuation, events: eventsContinuation,
            protocolVersion: configuration.protocolVersion, reconnect: configuration.reconnect)
        self.box = box
        let userdata = Unmanaged.passUnretained(box).toOpaque()
        guard let raw = mosquitto_new(configuration.clientID, configuration.cleanStart, userdata) else {
            throw VGWError(.mqtt, "cannot create the mqtt client (invalid client id or out of memory)")
        }
        self.handle = MosquittoHandle(raw: raw)
        // From here on, deinit runs if a configuration step fails, and destroys `raw`.
        try configure(configuration)
        box.recovery.withLock { $0 = { [weak self] in self?.recoverFromFatalError() } }
    }

    private func configure(_ configuration: MQTTConfiguration) throws(VGWError) {
        let mosq = handle.raw
        let version = configuration.protocolVersion == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try Library.check(
            mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, Int32(version)), "set protocol version")
        if configuration.protocolVersion == .v5 {
            // libmosquitto 2.0.11 counts incoming QoS 1/2 messages against a receive maximum of
            // 20 but frees a slot only after it has already sent the PUBACK/PUBCOMP, so under
            // load the broker legitimately sends the 21st message first and the client drops the
            // connection with a protocol error (which also ends its reconnect loop). Announcing
            // the largest receive maximum removes the race; the broker still limits what it has
            // in flight to us (`max_inflight_messages`).
            try Library.check(
                mosquitto_int_option(mosq, MOSQ_OPT_RECEIVE_MAXIMUM, 65535), "set receive maximum")
        }
        // Management requests and replies are small: without TCP_NODELAY each one can wait
        // for Nagle's algorithm and the peer's delayed ACK (tens of milliseconds).
        try Library.check(mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1), "set tcp nodelay")
        if let tls = configuration.tls {
            try Library.check(
                mosquitto_tls_set(mosq, tls.caFile, nil, tls.certFile, tls.keyFile, nil), "set up tls")
        }
        if configuration.username != nil || configuration.password != nil {
            try Library.check(
                mosquitto_username_pw_set(mosq, configuration.username, configuration.password),
                "set credentials")
        }
        if let will = configuration.will {
            try Library.check(
                will.payload.withUnsafeBytes { bytes in
                    mosquitto_will_set_v5(
                        mosq, will.topic, Int32(bytes.count), bytes.baseAddress, Int32(will.qos.rawValue),
                        will.retain,
                        nil)
                }, "set will")
        }
        if configuration.reconnect {
            try Library.check(
                mosquitto_reconnect_delay_set(
                    mosq, max(1, configuration.reconnectDelayMin),
                    max(configuration.reconnectDelayMin, configuration.reconnectDelayMax), true),
                "set reconnect delay")
        }
        mosquitto_connect_v5_callback_set(mosq, mqttOnConnect)
        mosquitto_disconnect_v5_callback_set(mosq, mqttOnDisconnect)
        mosquitto_publish_v5_callback_set(mosq, mqttOnPublish)
        mosquitto_message_v5_callback_set(mosq, mqttOnMessage)
        mosquitto_subscribe_v5_callback_set(mosq, mqttOnSubscribe)
        mosquitto_unsubscribe_v5_callback_set(mosq, mqttOnUnsubscribe)
    }

    deinit {
        // Join the network thread *before* destroying the handle and releasing the box,
        // so that no callback can run against freed memory. The thread is cancelled, so the
        // queued DISCONNECT may never reach the broker: dropping a connected client counts as
        // a connection loss and the broker may publish the will. Call `disconnect()` first.
        let running = box.state.withLock { state -> Bool in
            state.closed = true
            defer { state.loopRunning = false }
            return state.loopRunning
        }
        if running {
            _ = mosquitto_disconnect(handle.raw)
            _ = mosquitto_loop_stop(handle.raw, true)
        }
        mosquitto_destroy(handle.raw)
        box.messages.finish()
        box.events.finish()
    }

    /// Creates a client and connects it.
    public static func connected(_ configuration: MQTTConfiguration) async throws -> MQTTClient {
        let client = try MQTTClient(configuration)
        try await client.connect()
        return client
    }

    /// Whether the last CONNACK succeeded and the connection has not dropped since.
    public var isConnected: Bool { box.state.withLock { $0.isConnected } }

    /// Connects and waits for the CONNACK.
    ///
    /// Throws `VGWError(.mqtt, "connection refused: <reason>")` whose `mqttReasonCode` is
    /// the broker's code (v5: 0x86 bad username or password, 0x87 not authorized; 3.1.1:
    /// 4, 5); the client then stops instead of retrying. Any failure leaves the network
    /// thread stopped, so `connect()` may be called again.
    ///
    /// The TCP connect itself is blocking (libmosquitto has no asynchronous v5 connect
    /// that takes CONNECT properties); on loopback that is immediate, for a remote host it
    /// is bounded by the kernel's connect timeout, not by `operationTimeout`.
    ///
    /// A refusal after an *automatic* reconnect (credentials revoked meanwhile) is reported
    /// as `.connectionRefused` on `events`; the client then stays stopped until
    /// `disconnect()`, and a new client is needed.
    public func connect() async throws {
        let mosq = handle.raw
        let startable = box.state.withLock { state -> Bool in
            guard !state.closed, !state.loopRunning, !state.connecting else { return false }
            state.connecting = true
            state.pending[PendingKey(.connect, 0)] = nil
            return true
        }
        guard startable else {
            throw VGWError(.mqtt, "connect: the client is already connected or was disconnected")
        }
        defer { box.state.withLock { $0.connecting = false } }
        var properties: OpaquePointer?
        defer { mosquitto_property_free_all(&properties) }
        if configuration.protocolVersion == .v5, configuration.sessionExpiryInterval > 0 {
            try Library.check(
                mosquitto_property_add_int32(
                    &properties, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue),
                    configuration.sessionExpiryInterval), "set session expiry")
        }
        try Library.check(
            mosquitto_connect_bind_v5(
                mosq, configuration.host, Int32(configuration.port), Int32(configuration.keepAlive), nil,
                properties),
            "connect to \(configuration.host):\(configuration.port)")
        box.state.withLock { $0.loopRunning = true }
        do {
            try Library.check(mosquitto_loop_start(mosq), "start network thread")
        } catch {
            box.state.withLock { $0.loopRunning = false }
            throw error
        }
        if box.state.withLock({ $0.closed }) {
            // `disconnect()` ran while we were connecting; it could not see the thread yet.
            stopLoop()
            throw VGWError(.mqtt, "connect: the client was disconnected")
        }
        do {
            _ = try await awaitReply(PendingKey(.connect, 0), "connect")
            logger.debug("connected", ["client": configuration.clientID])
        } catch {
            stopLoop()
            throw error
        }
    }

    /// Sends DISCONNECT, stops the network thread and finishes the streams. Idempotent.
    public func disconnect() async {
        let wasRunning = box.state.withLock { state -> Bool in
            if state.closed && !state.loopRunning { return false }
            state.closed = true
            return state.loopRunning
        }
        if wasRunning {
            // mosquitto_disconnect only queues the DISCONNECT; the network thread sends it
            // and then reports the disconnection. Wait for that (bounded) so the broker sees
            // a clean DISCONNECT and does not publish the will, then join the thread.
            box.state.withLock { $0.pending[PendingKey(.disconnect, 0)] = nil }
            if mosquitto_disconnect(handle.raw) == Library.success {
                _ = try? await awaitReply(PendingKey(.disconnect, 0), "disconnect")
            }
            stopLoop()
        }
        box.failAll(
            [.connect, .disconnect, .publish, .subscribe, .unsubscribe], VGWError(.mqtt, "disconnected"))
        box.state.withLock { $0.isConnected = false }
        box.messages.finish()
        box.events.finish()
    }

    /// Joins the network thread. Forced (pthread_cancel) because the thread may be sleeping
    /// in a reconnect delay or retrying the connection, and must not outlive this call;
    /// callers first let it finish its clean work (DISCONNECT) where there is any.
    private func stopLoop() {
        let running = box.state.withLock { state -> Bool in
            defer { state.loopRunning = false }
            return state.loopRunning
        }
        guard running else { return }
        // Return codes deliberately ignored: NO_CONN (already down) and INVAL (thread already
        // gone) are both fine when the goal is "stopped".
        _ = mosquitto_disconnect(handle.raw)
        _ = mosquitto_loop_stop(handle.raw, true)
        box.state.withLock { $0.isConnected = false }
    }

    /// Restarts the connection after libmosquitto's network loop ended on a fatal error
    /// (for example a protocol error), retrying with the configured backoff until it
    /// connects, is refused, or the client is disconnected or released.
    private func recoverFromFatalError() {
        let minimum = Duration.seconds(Int(max(1, configuration.reconnectDelayMin)))
        let maximum = Duration.seconds(
            Int(max(configuration.reconnectDelayMin, configuration.reconnectDelayMax)))
        Task { [weak self] in
            var delay = minimum
            while true {
                try? await Task.sleep(for: delay)
                guard let client = self, !client.box.state.withLock({ $0.closed }) else { return }
                // The network thread has ended; join it so that a new one can start.
                client.stopLoop()
                do {
                    try await client.connect()
                    client.logger.info(
                        "reconnected after a fatal error", ["client": client.configuration.clientID])
                    return
                } catch let error as VGWError where error.mqttReasonCode != nil {
                    client.logger.error("reconnect refused", ["error": error])
                    return
                } catch {
                    client.logger.warning("reconnect failed", ["error": error])
                }
                delay = min(delay * 2, maximum)
            }
        }
    }

    // MARK: Publish

    /// Publishes a message.
    ///
    /// For QoS 0 it returns 0 once libmosquitto has queued the message. For QoS 1 and 2 it
    /// waits for PUBACK/PUBCOMP and returns its reason code: 0 success, 0x10 no matching
    /// subscribers (also a success), ≥ 0x80 refused (0x87 not authorized). Use
    /// `MQTTClient.isSuccess(_:)`. libmosquitto re-sends unacknowledged messages after a
    /// reconnect, so a lost connection does not fail the call; the timeout bounds it.
    @discardableResult
    public func publish(
        topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false,
        responseTopic: String? = nil,
        correlationData: [UInt8]? = nil
    ) async throws -> UInt8 {
        guard Topic.isValidName(topic) else {
            throw VGWError(.invalidArgument, "invalid topic name")
        }
        var properties: OpaquePointer?
        defer { mosquitto_property_free_all(&properties) }
        if responseTopic != nil || correlationData != nil {
            guard configuration.protocolVersion == .v5 else {
                throw VGWError(.mqtt, "response topic and correlation data need mqtt 5")
            }
            if let responseTopic {
                try Library.check(
                    mosquitto_property_add_string(
                        &properties, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), responseTopic),
                    "set response topic")
            }
            if let correlationData {
                guard correlationData.count <= Int(UInt16.max) else {
                    throw VGWError(.tooLarge, "correlation data is over 65535 bytes")
                }
                try Library.check(
                    correlationData.withUnsafeBytes { bytes in
                        mosquitto_property_add_binary(
                            &properties, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), bytes.baseAddress,
                            UInt16(bytes.count))
                    }, "set correlation data")
            }
        }
        var mid: Int32 = 0
        let rc = payload.withUnsafeBytes { bytes in
            mosquitto_publish_v5(
                handle.raw, &mid, topic, Int32(bytes.count), bytes.baseAddress, Int32(qos.rawValue), retain,
                properties)
        }
        try Library.check(rc, "publish to \(topic)")
        let key = PendingKey(.publish, mid)
        guard qos != .atMostOnce else {
            // libmosquitto reports QoS 0 messages too once written; nobody waits for that.
            box.abandon(key)
            return 0
        }
        guard case .published(let code) = try await awaitReply(key, "publish to \(topic)") else {
            return 0x80
        }
        return code
    }

    /// Publishes a UTF-8 string payload.
    @discardableResult
    public func publish(
        topic: String, string: String, qos: QoS = .atLeastOnce, retain: Bool = false,
        responseTopic: String? = nil,
        correlationData: [UInt8]? = nil
    ) async throws -> UInt8 {
        try await publish(
            topic: topic, payload: Array(string.utf8), qos: qos, retain: retain,
            responseTopic: responseTopic,
            correlationData: correlationData)
    }

    /// Whether a PUBACK/PUBCOMP/UNSUBACK reason code means success (< 0x80, which
    /// includes 0x10 "no matching subscribers").
    public static func isSuccess(_ reasonCode: UInt8) -> Bool { reasonCode < 0x80 }

    // MARK: Subscribe

    /// Subscribes and returns the SUBACK code: the granted QoS (0, 1, 2) or a refusal
    /// (≥ 0x80: 0x87 not authorized in MQTT 5, 0x80 failure in 3.1.1). Granted
    /// subscriptions are remembered and re-sent after a reconnect without a session.
    @discardableResult
    public func subscribe(_ filter: String, qos: QoS = .atLeastOnce) async throws -> UInt8 {
        try await subscribe([filter], qos: qos)[0]
    }

    /// Subscribes to several filters in one SUBSCRIBE; returns one code per filter.
    public func subscribe(_ filters: [String], qos: QoS = .atLeastOnce) async throws -> [UInt8] {
        guard !filters.isEmpty else { return [] }
        if let invalid = filters.first(where: { !Topic.isValidFilter($0) }) {
            throw VGWError(.invalidArgument, "invalid topic filter: \(invalid.debugDescription)")
        }
        var mid: Int32 = 0
        let rc = withCStringArray(filters) { pointers in
            mosquitto_subscribe_multiple(
                handle.raw, &mid, Int32(pointers.count), pointers.baseAddress, Int32(qos.rawValue), 0, nil)
        }
        try Library.check(rc, "subscribe to \(filters.joined(separator: ", "))")
        guard
            case .subscribed(let codes) = try await awaitReply(PendingKey(.subscribe, mid), "subscribe")
        else {
            throw VGWError(.mqtt, "subscribe: unexpected reply")
        }
        guard codes.count == filters.count else {
            throw VGWError(
                .mqtt, "subscribe: suback has \(codes.count) codes for \(filters.count) filters")
        }
        box.state.withLock { state in
            for (filter, code) in zip(filters, codes) where !MQTTClient.isRefusal(code) {
                state.subscriptions[filter] = QoS(rawValue: code) ?? qos
            }
        }
        return codes
    }

    /// Whether a SUBACK code is a refusal rather than a granted QoS.
    public static func isRefusal(_ subackCode: UInt8) -> Bool { subackCode >= 0x80 }

    /// Unsubscribes and forgets the subscription.
    public func unsubscribe(_ filter: String) async throws {
        guard Topic.isValidFilter(filter) else {
            throw VGWError(.invalidArgument, "invalid topic filter")
        }
        // Forget first: even if the UNSUBACK is lost, a reconnect must not resubscribe.
        box.state.withLock { _ = $0.subscriptions.removeValue(forKey: filter) }
        var mid: Int32 = 0
        try Library.check(
            mosquitto_unsubscribe_v5(handle.raw, &mid, filter, nil), "unsubscribe from \(filter)")
        _ = try await awaitReply(PendingKey(.unsubscribe, mid), "unsubscribe")
    }

    /// The filters currently subscribed (granted), as re-sent after a reconnect.
    public var subscriptions: [String: QoS] { box.state.withLock { $0.subscriptions } }

    // MARK: Test hooks

    /// Test hook: drops the TCP connection without DISCONNECT, as a crash or a network
    /// failure would; the broker then publishes the will and the client reconnects.
    public func _simulateConnectionLoss() {
        let fd = mosquitto_socket(handle.raw)
        if fd >= 0 {
            _ = shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    // MARK: Waiting

    /// Waits for the answer to `key`, bounded by the operation timeout and by task
    /// cancellation.
    private func awaitReply(_ key: PendingKey, _ what: String) async throws -> Reply {
        let box = self.box
        let timeout = configuration.operationTimeout
        let timer = Task {
            try await Task.sleep(for: timeout)
            box.fail(key, VGWError(.timeout, "\(what) timed out after \(timeout)"))
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                box.register(key, continuation)
            }
        } onCancel: {
            box.fail(key, CancellationError())
        }
    }
}

/// Calls `body` with a C array of C strings that live for the duration of the call.
private func withCStringArray<R>(
    _ strings: [String], _ body: (UnsafeBufferPointer<UnsafeMutablePointer<CChar>?>) -> R
) -> R {
    let pointers = strings.map { strdup($0) }
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer(body)
}
