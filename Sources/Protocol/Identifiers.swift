import Support

/// A provider's id: `[a-z0-9][a-z0-9-]{0,31}`, never `core`.
///
/// It becomes a topic level (`vgw/<p>/...`), a dynsec role and group name and a username
/// prefix, so the grammar excludes everything with a meaning in any of them: `/`, `+`,
/// `#`, `$`, `.`, spaces, upper case (usernames are case-sensitive, topics too, and two
/// providers that differ only in case would confuse every operator).
public struct ProviderID: RawRepresentable, Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// The id the operator's own services use (`vgw/core/...`); no provider may take it.
    public static let core = ProviderID(unchecked: "core")

    public static let maxLength = 32

    public init?(rawValue: String) {
        guard (try? ProviderID.validate(rawValue)) != nil else { return nil }
        self.rawValue = rawValue
    }

    public init(_ rawValue: String) throws {
        try ProviderID.validate(rawValue)
        self.rawValue = rawValue
    }

    private init(unchecked: String) { self.rawValue = unchecked }

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        self.rawValue = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }

    public static func < (lhs: ProviderID, rhs: ProviderID) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Checks the grammar; `core` is refused with `reserved`, everything else with `invalid_argument`.
    public static func validate(_ value: String) throws {
        try Identifier.validate(value, what: "provider id", maxLength: maxLength, allowUnderscore: false)
        if value == core.rawValue {
            throw VGWError(.reserved, "provider id core is reserved for the core gateway")
        }
    }
}

/// The name of a provider's client (a device or an app), unique within the provider.
/// `[a-z0-9][a-z0-9_-]{0,47}`; the broker username and client id are `<provider>.<name>`.
public struct ClientName: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public static let maxLength = 48

    public init?(rawValue: String) {
        guard (try? ClientName.validate(rawValue)) != nil else { return nil }
        self.rawValue = rawValue
    }

    public init(_ rawValue: String) throws {
        try ClientName.validate(rawValue)
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func validate(_ value: String) throws {
        try Identifier.validate(value, what: "client name", maxLength: maxLength, allowUnderscore: true)
    }
}

/// The broker identity of a provider's client: username and client id, bound together.
public struct ClientIdentity: Hashable, Sendable {
    public let provider: ProviderID
    public let name: ClientName

    public init(provider: ProviderID, name: ClientName) {
        self.provider = provider
        self.name = name
    }

    /// `.` cannot occur in a provider id, so `<provider>.<name>` is unambiguous and cannot
    /// collide with the core's own identities (`core.*`).
    public var username: String { "\(provider.rawValue).\(name.rawValue)" }
    public var clientID: String { username }
}

enum Identifier {
    static func validate(_ value: String, what: String, maxLength: Int, allowUnderscore: Bool) throws {
        guard !value.isEmpty else {
            throw VGWError(.invalidArgument, "\(what) must not be empty")
        }
        guard value.utf8.count <= maxLength else {
            throw VGWError(.invalidArgument, "\(what) is longer than \(maxLength) characters")
        }
        let bytes = Array(value.utf8)
        let isLowerAlnum: (UInt8) -> Bool = { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) }
        guard isLowerAlnum(bytes[0]) else {
            throw VGWError(.invalidArgument, "\(what) must start with a lowercase letter or a digit")
        }
        for byte in bytes.dropFirst() where !(isLowerAlnum(byte) || byte == 0x2D || (allowUnderscore && byte == 0x5F)) {
            let allowed = allowUnderscore ? "a-z, 0-9, '-' and '_'" : "a-z, 0-9 and '-'"
            throw VGWError(.invalidArgument, "\(what) may only contain \(allowed)")
        }
    }
}
