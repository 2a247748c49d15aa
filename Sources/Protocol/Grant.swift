import Foundation
import Support

/// What a grant lets the grantee do on the owner's subtree.
public enum GrantAccess: String, Sendable, Codable, CaseIterable {
    case read
    case write
    case readwrite

    public var reads: Bool { self != .write }
    public var writes: Bool { self != .read }
}

/// Who receives a grant: one provider, or every provider, present and future (`*`).
public enum Grantee: Hashable, Sendable, Codable, CustomStringConvertible {
    case provider(ProviderID)
    case everyone

    public init(_ text: String) throws {
        if text == "*" {
            self = .everyone
        } else {
            self = .provider(try ProviderID(text))
        }
    }

    public var description: String {
        switch self {
        case .provider(let id): id.rawValue
        case .everyone: "*"
        }
    }

    public func includes(_ provider: ProviderID) -> Bool {
        switch self {
        case .provider(let id): id == provider
        case .everyone: true
        }
    }

    public init(from decoder: any Decoder) throws {
        self = try Grantee(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An explicit, revocable permission: `owner` lets `grantee` read and/or write the subtree
/// `vgw/<owner>/<filter>`. The owner may be `core` (services the operator offers).
public struct Grant: Sendable, Codable, Equatable, Hashable {
    public var id: Int
    public var owner: ProviderID
    public var grantee: Grantee
    public var filter: String
    public var access: GrantAccess
    public var createdAt: Date

    public init(id: Int, owner: ProviderID, grantee: Grantee, filter: String, access: GrantAccess, createdAt: Date) {
        self.id = id
        self.owner = owner
        self.grantee = grantee
        self.filter = filter
        self.access = access
        self.createdAt = createdAt
    }

    /// The full topic filter the grant covers.
    public var topicFilter: String { "vgw/\(owner.rawValue)/\(filter)" }

    /// Whether the grant applies to `provider` (never to its own owner: it has it all).
    public func applies(to provider: ProviderID) -> Bool { provider != owner && grantee.includes(provider) }
}

/// The rules of a grant's filter, relative to the owner's namespace. Whatever passes
/// stays inside `vgw/<owner>/`: no empty levels, no `.` or `..` levels, no `$`, no NUL,
/// wildcards only as whole levels and `#` only last.
public enum GrantFilter {
    public static let maxLength = 256

    public static func validate(_ filter: String) throws {
        func refuse(_ why: String) -> VGWError { VGWError(.invalidArgument, "filter \(why)") }
        guard !filter.isEmpty else { throw refuse("must not be empty") }
        guard filter.utf8.count <= maxLength else { throw refuse("is longer than \(maxLength) bytes") }
        guard !filter.hasPrefix("/") else { throw refuse("must be relative to the owner's namespace (no leading /)") }
        guard !filter.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw refuse("must not contain control characters")
        }
        guard !filter.contains("$") else { throw refuse("must not contain $") }
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        for (index, level) in levels.enumerated() {
            if level.isEmpty { throw refuse("must not have empty levels") }
            if level == "." || level == ".." { throw refuse("must not have . or .. levels") }
            if level.contains("#") && (level != "#" || index != levels.count - 1) {
                throw refuse("may use # only as the whole last level")
            }
            if level.contains("+") && level != "+" { throw refuse("may use + only as a whole level") }
        }
    }
}
