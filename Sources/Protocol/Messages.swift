import Foundation
import Support

/// A management request: `{"id", "op", "args", "replyTo"}`, one MQTT message.
public struct Request: Sendable, Equatable, Codable {
    public var id: String
    public var op: String
    public var args: [String: JSONValue]
    /// One topic level; the response goes to `mgmt/<target>/res/<replyTo>`.
    public var replyTo: String

    public static let maxIDLength = 64
    public static let maxReplyToLength = 64

    public init(id: String, op: String, args: [String: JSONValue] = [:], replyTo: String) {
        self.id = id
        self.op = op
        self.args = args
        self.replyTo = replyTo
    }

    /// Decodes and validates a request payload. The thrown error says precisely what is
    /// wrong, and `partial` carries whatever could be read (id, replyTo) so that the
    /// error can still be answered to the right place.
    public static func decode(_ payload: [UInt8], maxSize: Int) -> Result<Request, RequestError> {
        guard payload.count <= maxSize else {
            return .failure(
                RequestError(VGWError(.tooLarge, "request is \(payload.count) bytes, over the limit of \(maxSize)")))
        }
        let value: JSONValue
        do {
            value = try JSONCoding.decoder.decode(JSONValue.self, from: Data(payload))
        } catch {
            return .failure(RequestError(VGWError(.badJSON, "request is not valid JSON")))
        }
        guard case .object(let object) = value else {
            return .failure(RequestError(VGWError(.badJSON, "request must be a JSON object")))
        }
        var partial = RequestError.Partial()
        if let id = object["id"]?.stringValue, id.utf8.count <= maxIDLength { partial.id = id }
        if let replyTo = object["replyTo"]?.stringValue, isValidReplyTo(replyTo) { partial.replyTo = replyTo }
        func fail(_ code: VGWError.Code, _ message: String) -> Result<Request, RequestError> {
            .failure(RequestError(VGWError(code, message), partial: partial))
        }
        guard let idValue = object["id"] else { return fail(.invalidRequest, "missing field id") }
        guard let id = idValue.stringValue else { return fail(.invalidRequest, "field id must be a string") }
        guard !id.isEmpty, id.utf8.count <= maxIDLength else {
            return fail(.invalidRequest, "field id must be 1 to \(maxIDLength) bytes")
        }
        guard let replyValue = object["replyTo"] else { return fail(.invalidRequest, "missing field replyTo") }
        guard let replyTo = replyValue.stringValue, isValidReplyTo(replyTo) else {
            return fail(
                .invalidRequest,
                "field replyTo must be one topic level of 1 to \(maxReplyToLength) characters from A-Z a-z 0-9 _ -")
        }
        guard let opValue = object["op"] else { return fail(.invalidRequest, "missing field op") }
        guard let op = opValue.stringValue else { return fail(.invalidRequest, "field op must be a string") }
        var args: [String: JSONValue] = [:]
        switch object["args"] {
        case nil, .null?: break
        case .object(let value)?: args = value
        default: return fail(.invalidRequest, "field args must be an object")
        }
        return .success(Request(id: id, op: op, args: args, replyTo: replyTo))
    }

    /// A reply level is a plain token: no `/`, `+`, `#`, `$`, so it can neither reach
    /// another topic nor be a wildcard.
    public static func isValidReplyTo(_ value: String) -> Bool {
        guard !value.isEmpty, value.utf8.count <= maxReplyToLength else { return false }
        return value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x5F || byte == 0x2D
        }
    }

    public func encoded() throws -> [UInt8] { Array(try JSONCoding.encoder.encode(self)) }
}

/// A request that could not be decoded, with what could be salvaged from it.
public struct RequestError: Error, Sendable {
    public struct Partial: Sendable, Equatable {
        public var id: String?
        public var replyTo: String?
        public init(id: String? = nil, replyTo: String? = nil) {
            self.id = id
            self.replyTo = replyTo
        }
    }

    public var error: VGWError
    public var partial: Partial

    public init(_ error: VGWError, partial: Partial = Partial()) {
        self.error = error
        self.partial = partial
    }
}

/// The answer to a request: `{"id", "ok", "result"}` or `{"id", "ok": false, "error"}`.
public struct Response: Sendable, Equatable, Codable {
    public struct ErrorBody: Sendable, Equatable, Codable {
        public var code: VGWError.Code
        public var message: String
        public init(code: VGWError.Code, message: String) {
            self.code = code
            self.message = message
        }
    }

    /// The request's id; null when the request was too broken to have one.
    public var id: String?
    public var ok: Bool
    public var result: JSONValue?
    public var error: ErrorBody?
    /// Which home answered (fleet operations fan out to many).
    public var home: String?

    public static func success(id: String?, result: JSONValue, home: String?) -> Response {
        Response(id: id, ok: true, result: result, error: nil, home: home)
    }

    public static func failure(id: String?, error: VGWError, home: String?) -> Response {
        Response(id: id, ok: false, result: nil, error: ErrorBody(code: error.code, message: error.message), home: home)
    }

    public func encoded() throws -> [UInt8] { Array(try JSONCoding.encoder.encode(self)) }

    public static func decode(_ payload: [UInt8]) throws -> Response {
        do {
            return try JSONCoding.decoder.decode(Response.self, from: Data(payload))
        } catch {
            throw VGWError(.badJSON, "response is not a valid response object", cause: SendableDescription("\(error)"))
        }
    }

    /// The result, or the error as a thrown `VGWError`.
    public func get() throws -> JSONValue {
        if ok { return result ?? .null }
        throw VGWError(error?.code ?? .internalError, error?.message ?? "request failed without an error body")
    }
}

/// Typed access to a request's arguments with precise errors.
public struct Arguments: Sendable {
    public let values: [String: JSONValue]
    public init(_ values: [String: JSONValue]) { self.values = values }

    public func string(_ name: String) throws -> String {
        guard let value = values[name] else { throw VGWError(.invalidArgument, "missing argument \(name)") }
        guard let string = value.stringValue else {
            throw VGWError(.invalidArgument, "argument \(name) must be a string")
        }
        return string
    }

    public func optionalString(_ name: String) throws -> String? {
        guard let value = values[name], value != .null else { return nil }
        guard let string = value.stringValue else {
            throw VGWError(.invalidArgument, "argument \(name) must be a string")
        }
        return string
    }

    public func optionalBool(_ name: String) throws -> Bool? {
        guard let value = values[name], value != .null else { return nil }
        guard let bool = value.boolValue else { throw VGWError(.invalidArgument, "argument \(name) must be a boolean") }
        return bool
    }

    public func optionalInt(_ name: String) throws -> Int? {
        guard let value = values[name], value != .null else { return nil }
        guard let int = value.intValue else { throw VGWError(.invalidArgument, "argument \(name) must be an integer") }
        return int
    }

    public func provider(_ name: String = "provider") throws -> ProviderID {
        try ProviderID(string(name))
    }

    public func optionalProvider(_ name: String = "provider") throws -> ProviderID? {
        try optionalString(name).map { try ProviderID($0) }
    }

    public func clientName(_ name: String = "name") throws -> ClientName {
        try ClientName(string(name))
    }

    /// Refuses arguments the op does not know: a typo must not be silently ignored.
    public func allowOnly(_ names: Set<String>) throws {
        if let unknown = values.keys.sorted().first(where: { !names.contains($0) }) {
            throw VGWError(.invalidArgument, "unknown argument \(unknown)")
        }
    }
}
