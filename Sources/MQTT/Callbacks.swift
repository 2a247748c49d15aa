import CMosquitto
import Support
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// The libmosquitto callbacks. They run on libmosquitto's own network thread, so they are
// plain nonisolated free functions (a callback inherited from an actor-isolated context
// would trap with SIGILL on that thread). They find their client through the userdata
// pointer, which holds an *unretained* reference to the client's `CallbackBox`: the client
// owns the box and stops the network thread before it lets the box go, so the pointer is
// never dangling while a callback can still run. They do no real work: they update the
// locked state, resume continuations and yield into streams. The only libmosquitto calls
// made from them only queue packets or mark state (re-subscriptions on reconnect,
// `mosquitto_disconnect` to stop retrying), and our lock is never held across a
// libmosquitto call, so the two libraries' locks cannot deadlock.

private func box(_ obj: UnsafeMutableRawPointer?) -> CallbackBox? {
    guard let obj else { return nil }
    return Unmanaged<CallbackBox>.fromOpaque(obj).takeUnretainedValue()
}

func mqttOnConnect(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ flags: Int32,
    _ props: OpaquePointer?
) {
    box(obj)?.handleConnect(mosq, rc: rc, flags: flags)
}

func mqttOnDisconnect(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ props: OpaquePointer?
) {
    box(obj)?.handleDisconnect(mosq, rc: rc)
}

func mqttOnPublish(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ reason: Int32,
    _ props: OpaquePointer?
) {
    box(obj)?.deliver(PendingKey(.publish, mid), .published(UInt8(truncatingIfNeeded: reason)))
}

func mqttOnSubscribe(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ count: Int32,
    _ granted: UnsafePointer<Int32>?, _ props: OpaquePointer?
) {
    var codes: [UInt8] = []
    if let granted, count > 0 {
        codes = UnsafeBufferPointer(start: granted, count: Int(count)).map {
            UInt8(truncatingIfNeeded: $0)
        }
    }
    box(obj)?.handleSuback(mid: mid, codes: codes)
}

func mqttOnUnsubscribe(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ props: OpaquePointer?
) {
    box(obj)?.deliver(PendingKey(.unsubscribe, mid), .unsubscribed)
}

func mqttOnMessage(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?,
    _ message: UnsafePointer<mosquitto_message>?,
    _ props: OpaquePointer?
) {
    guard let box = box(obj), let message, let topicPointer = message.pointee.topic else { return }
    let length = Int(message.pointee.payloadlen)
    var payload: [UInt8] = []
    if length > 0, let bytes = message.pointee.payload {
        payload = Array(UnsafeRawBufferPointer(start: bytes, count: length))
    }
    var responseTopic: String?
    var correlationData: [UInt8]?
    if let props {
        var text: UnsafeMutablePointer<CChar>?
        if mosquitto_property_read_string(props, Int32(MQTT_PROP_RESPONSE_TOPIC.rawValue), &text, false)
            != nil,
            let text
        {
            responseTopic = String(cString: text)
            free(text)
        }
        var data: UnsafeMutableRawPointer?
        var dataLength: UInt16 = 0
        if mosquitto_property_read_binary(
            props, Int32(MQTT_PROP_CORRELATION_DATA.rawValue), &data, &dataLength, false) != nil
        {
            correlationData =
                data.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(dataLength))) } ?? []
            free(data)
        }
    }
    box.messages.yield(
        MQTTMessage(
            topic: String(cString: topicPointer), payload: payload,
            qos: QoS(rawValue: UInt8(truncatingIfNeeded: message.pointee.qos)) ?? .atMostOnce,
            retain: message.pointee.retain, responseTopic: responseTopic, correlationData: correlationData
        ))
}

/// What an awaited operation is waiting for.
struct PendingKey: Hashable, Sendable {
    enum Kind: Hashable, Sendable {
        case connect, disconnect, publish, subscribe, unsubscribe
    }
    var kind: Kind
    var id: Int32

    init(_ kind: Kind, _ id: Int32) {
        self.kind = kind
        self.id = id
    }
}

/// The broker's answer to an awaited operation.
enum Reply: Sendable {
    case connected(sessionPresent: Bool)
    case published(UInt8)
    case subscribed([UInt8])
    case unsubscribed
    case disconnected(Int32)
}

/// One awaited operation. The acknowledgement can arrive on the network thread *before*
/// the caller has registered its continuation (libmosquitto returns the message id only
/// after queueing the packet), and we never hold our lock while calling libmosquitto, so
/// whichever side comes second completes the pair.
enum Slot {
    case waiting(CheckedContinuation<Reply, any Error>)
    case arrived(Reply)
    case failed(any Error)
    /// The caller gave up (timeout, cancellation); drop the late acknowledgement.
    case abandoned
}

struct ClientState: ~Copyable {
    var pending: [PendingKey: Slot] = [:]
    /// Granted subscriptions, re-sent after a reconnect that found no session.
    var subscriptions: [String: QoS] = [:]
    var isConnected = false
    /// The network thread was started and not yet joined.
    var loopRunning = false
    /// `disconnect()` was called: the client is finished for good.
    var closed = false
    /// A `connect()` is in progress (guards against two concurrent calls).
    var connecting = false
    /// Message ids of the automatic resubscriptions still waiting for their SUBACK, with
    /// their filters; `.connected` is announced once they are all answered.
    var resubscribing: [Int32: [String]] = [:]
    var deferredConnected: MQTTEvent?
}

/// The part of the client the callbacks see. Owned by `MQTTClient`; see the note at the
/// top of this file for why an unretained pointer to it is safe.
final class CallbackBox: Sendable {
    let state = Mutex(ClientState())
    let messages: AsyncStream<MQTTMessage>.Continuation
    let events: AsyncStream<MQTTEvent>.Continuation
    let protocolVersion: MQTTProtocolVersion
    let reconnect: Bool
    /// Set by the client: restarts the network thread after a fatal error (see
    /// `handleDisconnect`). Holds the client weakly.
    let recovery = Mutex<(@Sendable () -> Void)?>(nil)

    /// The `MOSQ_ERR_*` codes after which libmosquitto 2.0's `mosquitto_loop_forever` gives
    /// up instead of reconnecting (protocol error, out of memory, ...).
    static let fatalCodes: Set<Int32> = [
        MOSQ_ERR_NOMEM, MOSQ_ERR_PROTOCOL, MOSQ_ERR_INVAL, MOSQ_ERR_NOT_FOUND, MOSQ_ERR_TLS,
        MOSQ_ERR_PAYLOAD_SIZE, MOSQ_ERR_NOT_SUPPORTED, MOSQ_ERR_AUTH, MOSQ_ERR_ACL_DENIED,
        MOSQ_ERR_UNKNOWN, MOSQ_ERR_EAI, MOSQ_ERR_PROXY,
    ].reduce(into: []) { $0.insert(Int32($1.rawValue)) }

    /// A reason code from the broker's DISCONNECT (MQTT 5), other than "session taken over"
    /// (0x8E): reconnecting then would only take the session back and start a duel.
    static func isServerDisconnect(_ rc: Int32) -> Bool { rc >= 0x80 && rc != 0x8E }

    init(
        messages: AsyncStream<MQTTMessage>.Continuation, events: AsyncStream<MQTTEvent>.Continuation,
        protocolVersion: MQTTProtocolVersion, reconnect: Bool
    ) {
        self.messages = messages
        self.events = events
        self.protocolVersion = protocolVersion
        self.reconnect = reconnect
    }

    // MARK: Pending operations

    /// Registers the caller's continuation, or completes it at once if the answer (or a
    /// failure) came first.
    func register(_ key: PendingKey, _ continuation: CheckedContinuation<Reply, any Error>) {
        state.withLock { state in
            switch state.pending[key] {
            case .arrived(let reply):
                state.pending[key] = nil
                continuation.resume(returning: reply)
            case .failed(let error):
                state.pending[key] = .abandoned
                continuation.resume(throwing: error)
            case .waiting(let previous):
                // A message id is reused only after its acknowledgement; fail the stale waiter.
                previous.resume(throwing: VGWError(.mqtt, "message id reused"))
                state.pending[key] = .waiting(continuation)
            case .abandoned, nil:
                state.pending[key] = .waiting(continuation)
            }
        }
    }

    func deliver(_ key: PendingKey, _ reply: Reply) {
        state.withLock { state in
            switch state.pending[key] {
            case .waiting(let continuation):
                state.pending[key] = nil
                continuation.resume(returning: reply)
            case .abandoned, .failed:
                state.pending[key] = nil
            case .arrived, nil:
                state.pending[key] = .arrived(reply)
            }
        }
    }

    func fail(_ key: PendingKey, _ error: any Error) {
        state.withLock { state in
            switch state.pending[key] {
            case .waiting(let continuation):
                state.pending[key] = .abandoned
                continuation.resume(throwing: error)
            case nil:
                state.pending[key] = .failed(error)
            case .arrived, .failed, .abandoned:
                break
            }
        }
    }

    /// Marks an operation whose answer nobody will wait for (resubscriptions, QoS 0 publishes).
    func abandon(_ key: PendingKey) {
        state.withLock { state in
            if case .arrived = state.pending[key] {
                state.pending[key] = nil
            } else {
                state.pending[key] = .abandoned
            }
        }
    }

    /// Fails every waiter of the given kinds; used when the connection drops (SUBACKs and
    /// UNSUBACKs are not resent by libmosquitto) and on `disconnect()`.
    func failAll(_ kinds: Set<PendingKey.Kind>, _ error: VGWError) {
        state.withLock { state in
            for (key, slot) in state.pending where kinds.contains(key.kind) {
                if case .waiting(let continuation) = slot {
                    continuation.resume(throwing: error)
                }
                state.pending[key] = nil
            }
        }
    }

    // MARK: Connection

    func handleConnect(_ mosq: OpaquePointer?, rc: Int32, flags: Int32) {
        if rc == 0 {
            let sessionPresent = flags & 1 != 0
            let resubscribe = state.withLock { state -> [String: QoS] in
                state.isConnected = true
                state.resubscribing = [:]
                state.deferredConnected = nil
                return sessionPresent ? [:] : state.subscriptions
            }
            // Re-subscribe from the callback: libmosquitto only queues the packets. The
            // `.connected` event waits for their SUBACKs, so that whoever reacts to it (for
            // example by asking a peer to publish) can rely on the subscriptions.
            var sent: [Int32: [String]] = [:]
            if let mosq {
                for (filter, qos) in resubscribe.sorted(by: { $0.key < $1.key }) {
                    var mid: Int32 = 0
                    let rc = mosquitto_subscribe_v5(mosq, &mid, filter, Int32(qos.rawValue), 0, nil)
                    if rc == Library.success {
                        sent[mid] = [filter]
                    }
                }
            }
            let event = MQTTEvent.connected(sessionPresent: sessionPresent)
            let announceNow = state.withLock { state -> Bool in
                guard !sent.isEmpty else { return true }
                state.resubscribing = sent
                state.deferredConnected = event
                return false
            }
            deliver(PendingKey(.connect, 0), .connected(sessionPresent: sessionPresent))
            if announceNow { events.yield(event) }
        } else {
            let code = MQTTReasonCode(Int(rc), protocolVersion: protocolVersion)
            state.withLock { $0.isConnected = false }
            // Stop retrying: the same credentials would be refused again, forever.
            // (mosquitto_disconnect only marks the state; the loop then ends by itself.)
            if let mosq { _ = mosquitto_disconnect(mosq) }
            fail(
                PendingKey(.connect, 0),
                VGWError(
                    .mqtt, "connection refused: \(MQTTReasonCode.text(for: Int(rc), protocolVersion))",
                    cause: code))
            events.yield(.connectionRefused(code))
        }
    }

    /// A SUBACK: either for a caller's `subscribe` or for an automatic resubscription.
    func handleSuback(mid: Int32, codes: [UInt8]) {
        let (automatic, event) = state.withLock { state -> (Bool, MQTTEvent?) in
            guard let filters = state.resubscribing.removeValue(forKey: mid) else { return (false, nil) }
            // A subscription the broker no longer grants (its ACL changed) is forgotten.
            for (filter, code) in zip(filters, codes) where code >= 0x80 {
                state.subscriptions[filter] = nil
            }
            guard state.resubscribing.isEmpty, let event = state.deferredConnected else {
                return (true, nil)
            }
            state.deferredConnected = nil
            return (true, event)
        }
        if !automatic {
            deliver(PendingKey(.subscribe, mid), .subscribed(codes))
        } else if let event {
            events.yield(event)
        }
    }

    func handleDisconnect(_ mosq: OpaquePointer?, rc: Int32) {
        let closed = state.withLock { state -> Bool in
            state.isConnected = false
            state.resubscribing = [:]
            state.deferredConnected = nil
            return state.closed
        }
        let lost = VGWError(.mqtt, "connection lost", cause: LibraryError(code: rc))
        fail(PendingKey(.connect, 0), lost)
        deliver(PendingKey(.disconnect, 0), .disconnected(rc))
        failAll([.subscribe, .unsubscribe], lost)
        if rc != 0, !reconnect || closed, let mosq {
            // Without automatic reconnect, marking the state disconnected ends the loop.
            _ = mosquitto_disconnect(mosq)
        } else if reconnect, CallbackBox.fatalCodes.contains(rc) || CallbackBox.isServerDisconnect(rc) {
            // libmosquitto's loop ends for good after this error, and after any MQTT 5
            // DISCONNECT from the broker (it marks the client disconnected, as if asked to):
            // the client restarts it so that services survive dynsec's kicks (0x98) and broker
            // restarts (0x8B). The restart runs in a task, not on this thread.
            recovery.withLock { $0 }?()
        }
        events.yield(.disconnected(reasonCode: rc))
    }
}
