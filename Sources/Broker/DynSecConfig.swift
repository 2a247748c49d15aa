import Crypto
import Foundation
import Support

/// The dynamic security plugin's configuration file (Mosquitto 2.0), as a value.
///
/// The core writes this whole file from its store before every broker start: the broker's
/// identities and ACLs are a function of the store, so a lost or hand-edited file heals on
/// the next start, and a start with 1,000 providers costs one file write instead of
/// thousands of `$CONTROL` commands (each of which makes the plugin rewrite the file).
public struct DynSecConfig: Codable, Sendable, Equatable {
    public struct DefaultAccess: Codable, Sendable, Equatable {
        public var publishClientSend: Bool
        public var publishClientReceive: Bool
        public var subscribe: Bool
        public var unsubscribe: Bool

        /// Deny by default, including delivery (`publishClientReceive`): with receive
        /// allowed by default, a revoked subscription of a persistent session would keep
        /// receiving.
        public static let denyAll = DefaultAccess(
            publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true)
    }

    public struct RoleRef: Codable, Sendable, Equatable {
        public var rolename: String
        public init(_ rolename: String) { self.rolename = rolename }
    }

    public struct ClientRef: Codable, Sendable, Equatable {
        public var username: String
        public init(_ username: String) { self.username = username }
    }

    public struct Client: Codable, Sendable, Equatable {
        public var username: String
        public var clientid: String?
        public var textName: String?
        public var password: String
        public var salt: String
        public var iterations: Int
        public var disabled: Bool?
        public var roles: [RoleRef]?

        public init(
            username: String, clientid: String?, textName: String? = nil, password: PasswordHash,
            disabled: Bool = false, roles: [String] = []
        ) {
            self.username = username
            self.clientid = clientid
            self.textName = textName
            self.password = password.hash
            self.salt = password.salt
            self.iterations = password.iterations
            self.disabled = disabled ? true : nil
            self.roles = roles.isEmpty ? nil : roles.map(RoleRef.init)
        }
    }

    public struct Group: Codable, Sendable, Equatable {
        public var groupname: String
        public var roles: [RoleRef]
        public var clients: [ClientRef]
    }

    public struct Role: Codable, Sendable, Equatable {
        public var rolename: String
        public var acls: [ACL]
    }

    public var clients: [Client]
    public var groups: [Group]
    public var roles: [Role]
    public var defaultACLAccess: DefaultAccess

    public init(clients: [Client], groups: [Group], roles: [Role], defaultACLAccess: DefaultAccess = .denyAll) {
        self.clients = clients
        self.groups = groups
        self.roles = roles
        self.defaultACLAccess = defaultACLAccess
    }

    /// Writes the file atomically (temporary file, fsync, rename) with mode 0600: it holds
    /// password hashes. `owner` hands it to the broker's user when the broker drops root.
    public func write(to path: String, owner: (uid: uid_t, gid: gid_t)? = nil) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(self)
        } catch {
            throw VGWError(
                .internalError, "cannot encode the dynamic security configuration",
                cause: SendableDescription("\(error)"))
        }
        try AtomicFile.write(data, to: path, mode: 0o600, owner: owner)
    }
}

/// One ACL entry of a dynsec role.
public struct ACL: Codable, Sendable, Equatable, Hashable {
    public enum Kind: String, Codable, Sendable {
        case publishClientSend, publishClientReceive, subscribeLiteral, subscribePattern, unsubscribeLiteral,
            unsubscribePattern
    }

    public var acltype: Kind
    public var topic: String
    public var allow: Bool
    public var priority: Int?

    public init(_ kind: Kind, _ topic: String, allow: Bool = true, priority: Int? = nil) {
        self.acltype = kind
        self.topic = topic
        self.allow = allow
        self.priority = priority
    }

    /// The usual triple: publish, subscribe and receive on one filter.
    public static func readWrite(_ topic: String) -> [ACL] {
        [ACL(.publishClientSend, topic)] + read(topic)
    }

    /// Subscribe and receive, no publish.
    public static func read(_ topic: String) -> [ACL] {
        [ACL(.subscribePattern, topic), ACL(.publishClientReceive, topic)]
    }
}

/// Atomic file replacement, so a crash mid-write never leaves a truncated configuration.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, mode: mode_t, owner: (uid: uid_t, gid: gid_t)? = nil) throws
    {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VGWError(.io, "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var ok = data.withUnsafeBytes { buffer -> Bool in
            guard let base = buffer.baseAddress else { return true }
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(fd, base + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
        ok = ok && fchmod(fd, mode) == 0
        if ok, let owner { ok = fchown(fd, owner.uid, owner.gid) == 0 }
        ok = ok && fsync(fd) == 0
        let saved = errno
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(ok ? errno : saved))
            unlink(temporary)
            throw VGWError(.io, "cannot write \(path): \(reason)")
        }
    }
}
