import Support

/// MQTT quality of service levels.
public enum QoS: UInt8, Sendable, CaseIterable, Comparable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2

    public static func < (lhs: QoS, rhs: QoS) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The protocol versions the client speaks. MQTT 5 is the default because its reason
/// codes (on CONNACK, SUBACK, PUBACK, DISCONNECT) tell *why* something failed.
public enum MQTTProtocolVersion: Sendable, Equatable {
    case v311
    case v5
}

/// The message the broker publishes on our behalf when the connection dies without a
/// clean DISCONNECT (the "last will"): how services announce that they went away.
public struct MQTTWill: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}

/// Everything needed to open one MQTT connection.
public struct MQTTConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var clientID: String
    public var username: String?
    public var password: String?
    public var protocolVersion: MQTTProtocolVersion
    /// Seconds between keep-alive PINGs; the broker drops us (and sends the will) after 1.5×.
    public var keepAlive: Int
    /// Start with a fresh session (MQTT 5 clean start / 3.1.1 clean session).
    public var cleanStart: Bool
    /// MQTT 5 only: how long the broker keeps the session after the connection ends.
    public var sessionExpiryInterval: UInt32
    public var will: MQTTWill?
    /// Reconnect automatically after a lost connection, with exponential backoff between
    /// `reconnectDelayMin` and `reconnectDelayMax` seconds. A refused CONNACK always stops
    /// the client: retrying with the same credentials cannot succeed.
    public var reconnect: Bool
    public var reconnectDelayMin: UInt32
    public var reconnectDelayMax: UInt32
    /// Upper bound of every awaited operation (CONNACK, PUBACK/PUBCOMP, SUBACK, UNSUBACK).
    public var operationTimeout: Duration
    /// TLS to the broker (`mqtts://`); nil is plain TCP.
    public var tls: MQTTTLS?

    public init(
        host: String = "127.0.0.1",
        port: Int = 1883,
        clientID: String,
        username: String? = nil,
        password: String? = nil,
        protocolVersion: MQTTProtocolVersion = .v5,
        keepAlive: Int = 30,
        cleanStart: Bool = true,
        sessionExpiryInterval: UInt32 = 0,
        will: MQTTWill? = nil,
        reconnect: Bool = true,
        reconnectDelayMin: UInt32 = 1,
        reconnectDelayMax: UInt32 = 30,
        operationTimeout: Duration = .seconds(10)
    ) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.username = username
        self.password = password
        self.protocolVersion = protocolVersion
        self.keepAlive = keepAlive
        self.cleanStart = cleanStart
        self.sessionExpiryInterval = sessionExpiryInterval
        self.will = will
        self.reconnect = reconnect
        self.reconnectDelayMin = reconnectDelayMin
        self.reconnectDelayMax = reconnectDelayMax
        self.operationTimeout = operationTimeout
    }
}

/// TLS settings: the CA that signs the broker's certificate (its name must match `host`),
/// and this client's own certificate and key when the broker asks for one.
public struct MQTTTLS: Sendable, Equatable {
    public var caFile: String
    public var certFile: String?
    public var keyFile: String?

    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// One received PUBLISH.
public struct MQTTMessage: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool
    /// MQTT 5 request/response: where the requester wants the answer.
    public var responseTopic: String?
    /// MQTT 5 request/response: opaque bytes the responder must echo back.
    public var correlationData: [UInt8]?

    public init(
        topic: String, payload: [UInt8], qos: QoS = .atMostOnce, retain: Bool = false,
        responseTopic: String? = nil,
        correlationData: [UInt8]? = nil
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.responseTopic = responseTopic
        self.correlationData = correlationData
    }

    /// The payload decoded as UTF-8 (invalid sequences repaired), for text payloads such as JSON.
    public var payloadString: String { String(decoding: payload, as: UTF8.self) }
}

/// Changes of the connection, in the order the network thread saw them.
public enum MQTTEvent: Sendable, Equatable {
    /// A CONNACK with success. After an automatic reconnect without a session, it is
    /// delivered only once the broker has answered the automatic re-subscriptions, so a
    /// consumer that reacts to it (for example by asking a peer to publish) can rely on them.
    case connected(sessionPresent: Bool)
    /// The connection ended. `reasonCode` is 0 for our own clean disconnect, the MQTT 5
    /// DISCONNECT reason code when the broker sent one (0x98 administrative action,
    /// 0x8E session taken over), otherwise libmosquitto's error (7 = connection lost).
    case disconnected(reasonCode: Int32)
    /// The broker refused the CONNECT (for example after a reconnect with revoked
    /// credentials); the client has stopped and will not retry.
    case connectionRefused(MQTTReasonCode)
}

/// A reason code from the broker (CONNACK, SUBACK, PUBACK, DISCONNECT), kept as the cause
/// of a `VGWError` so that callers can branch on the number while logs get the text.
public struct MQTTReasonCode: Error, Sendable, Hashable, CustomStringConvertible {
    /// The number as the broker sent it: MQTT 5 reason code (0x87 not authorized) or,
    /// for a 3.1.1 CONNACK, the return code (5 not authorized).
    public var value: Int
    public var protocolVersion: MQTTProtocolVersion

    public init(_ value: Int, protocolVersion: MQTTProtocolVersion) {
        self.value = value
        self.protocolVersion = protocolVersion
    }

    /// CONNACK refusals that mean "wrong credentials", in either protocol version.
    public var isBadCredentials: Bool {
        protocolVersion == .v5 ? value == 0x86 : value == 4
    }

    /// CONNACK refusals that mean "not authorized", in either protocol version.
    public var isNotAuthorized: Bool {
        protocolVersion == .v5 ? value == 0x87 : value == 5
    }

    public var description: String {
        "reason code \(value) (0x\(String(value, radix: 16))): \(MQTTReasonCode.text(for: value, protocolVersion))"
    }

    /// Human text for a CONNACK code. libmosquitto's strings are capitalised and, for
    /// 3.1.1, use British spelling; ours are lowercase to fit `VGWError` messages.
    static func text(for value: Int, _ version: MQTTProtocolVersion) -> String {
        if version == .v311 {
            switch value {
            case 0: return "accepted"
            case 1: return "unacceptable protocol version"
            case 2: return "identifier rejected"
            case 3: return "server unavailable"
            case 4: return "bad username or password"
            case 5: return "not authorized"
            default: return "unknown return code"
            }
        }
        return lowercasedSentence(libraryReasonString(value))
    }
}

extension VGWError {
    /// The broker's reason code when this error is a refusal (CONNACK), else nil.
    public var mqttReasonCode: MQTTReasonCode? { cause as? MQTTReasonCode }
}

/// Lowercases the first letter and drops a final period: "Not authorized." → "not authorized".
func lowercasedSentence(_ text: String) -> String {
    var text = text
    if text.hasSuffix(".") { text.removeLast() }
    guard let first = text.first else { return text }
    return first.lowercased() + text.dropFirst()
}
