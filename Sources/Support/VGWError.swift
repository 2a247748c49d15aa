/// The one error type of the project: a stable machine-readable code, a lowercase
/// human message, and the underlying cause when there is one.
///
/// Codes travel on the wire (`docs/protocol.md` lists them), so they are strings that
/// never change meaning once published.
public struct VGWError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Code: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible,
        ExpressibleByStringLiteral
    {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        // Request-level errors (answered to the requester).
        /// The payload is not a JSON object.
        public static let badJSON: Code = "bad_json"
        /// The JSON is well formed but not a valid request (missing or mistyped field).
        public static let invalidRequest: Code = "invalid_request"
        /// The `op` is not one this endpoint serves.
        public static let unknownOp: Code = "unknown_op"
        /// An argument has the wrong type or an invalid value.
        public static let invalidArgument: Code = "invalid_argument"
        /// The thing named does not exist (or is not visible to the requester).
        public static let notFound: Code = "not_found"
        /// The thing to create exists already.
        public static let alreadyExists: Code = "already_exists"
        /// The name is reserved for the core gateway.
        public static let reserved: Code = "reserved"
        /// The requester may not do this.
        public static let forbidden: Code = "forbidden"
        /// The payload or an argument is over a configured size limit.
        public static let tooLarge: Code = "too_large"
        /// The operation conflicts with the current state (for example, already stopped).
        public static let conflict: Code = "conflict"

        // Local failures.
        public static let timeout: Code = "timeout"
        public static let unavailable: Code = "unavailable"
        public static let io: Code = "io_error"
        public static let storage: Code = "storage_error"
        public static let mqtt: Code = "mqtt_error"
        public static let broker: Code = "broker_error"
        public static let spawn: Code = "spawn_error"
        public static let config: Code = "config_error"
        public static let usage: Code = "usage"
        public static let internalError: Code = "internal"

        /// A bundle archive or its manifest is malformed, unsafe or refused.
        public static let invalidBundle: Code = "invalid_bundle"
        /// A cgroup or rlimit could not be created, written, read or removed.
        public static let resourceLimit: Code = "resource_limit"
    }

    public var code: Code
    public var message: String
    /// What went wrong underneath, kept for logs; never sent on the wire.
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause {
            return "\(code): \(message) (\(cause))"
        }
        return "\(code): \(message)"
    }

    public static func == (lhs: VGWError, rhs: VGWError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }
}

extension VGWError {
    /// Wraps any error as a `VGWError`, keeping one that already is.
    public static func wrap(_ error: any Error, _ code: Code, _ message: String) -> VGWError {
        if let error = error as? VGWError { return error }
        return VGWError(code, message, cause: SendableDescription(String(describing: error)))
    }
}

/// A cause known only by its description (for errors that are not `Sendable`).
public struct SendableDescription: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
