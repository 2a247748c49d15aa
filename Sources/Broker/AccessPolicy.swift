import Crypto
import Protocol

/// What the broker must enforce, derived from the store: who exists and which VGWs run.
public struct AccessState: Sendable, Equatable {
    public struct Provider: Sendable, Equatable {
        public var id: ProviderID
        public var running: Bool
        public init(id: ProviderID, running: Bool) {
            self.id = id
            self.running = running
        }
    }

    public struct Client: Sendable, Equatable {
        public var identity: ClientIdentity
        public var password: PasswordHash
        public init(identity: ClientIdentity, password: PasswordHash) {
            self.identity = identity
            self.password = password
        }
    }

    public var providers: [Provider]
    public var clients: [Client]
    /// Grants in force; each adds ACLs to the roles of the providers it applies to.
    public var grants: [Grant]
    /// The daemon's own identity (full rights, `$CONTROL` included).
    public var daemon: CoreIdentity
    /// The operator's CLI identity (management requests only).
    public var operators: [CoreIdentity]

    public init(
        providers: [Provider], clients: [Client], grants: [Grant] = [], daemon: CoreIdentity,
        operators: [CoreIdentity]
    ) {
        self.providers = providers
        self.clients = clients
        self.grants = grants
        self.daemon = daemon
        self.operators = operators
    }
}

/// An identity of the core gateway itself (`core.*` usernames, which no provider can have).
public struct CoreIdentity: Sendable, Equatable {
    public var username: String
    public var password: PasswordHash
    public init(username: String, password: PasswordHash) {
        self.username = username
        self.password = password
    }
}

/// The isolation model, in one place: which roles and ACLs each kind of identity gets.
///
/// Names: role `vgw-<p>` per provider; `core-daemon` and `core-operator` for the core. Provider ids cannot contain `.`, and `core` is reserved, so none of these collide.
public enum AccessPolicy {
    public static let daemonRole = "core-daemon"
    public static let operatorRole = "core-operator"

    public static func roleName(_ provider: ProviderID) -> String { "vgw-\(provider.rawValue)" }

    /// A provider's clients: read/write their namespace (shared subscriptions included,
    /// which need their own pattern), send management requests to their own VGW and read
    /// the answers, read (never write) their VGW's status.
    public static func providerACLs(_ provider: ProviderID) -> [ACL] {
        let p = provider.rawValue
        return ACL.readWrite("vgw/\(p)/#")
            + [ACL(.subscribePattern, "$share/+/vgw/\(p)/#")]
            + [ACL(.publishClientSend, "mgmt/\(p)/req")]
            + ACL.read("mgmt/\(p)/res/#")
            + ACL.read("status/\(p)/#")
    }

    /// What a grant adds to a grantee's role: read is subscribe and receive (delivery is
    /// checked on every message, so a revoke stops a live subscription), write is publish.
    public static func grantACLs(_ grant: Grant) -> [ACL] {
        (grant.access.reads ? ACL.read(grant.topicFilter) : [])
            + (grant.access.writes ? [ACL(.publishClientSend, grant.topicFilter)] : [])
    }

    /// A provider's whole role: its own namespace plus every grant that applies to it.
    public static func roleACLs(_ provider: ProviderID, grants: [Grant]) -> [ACL] {
        var acls = providerACLs(provider)
        for grant in grants where grant.applies(to: provider) {
            for acl in grantACLs(grant) where !acls.contains(acl) { acls.append(acl) }
        }
        return acls
    }

    /// The daemon: everything, including the `$CONTROL` and `$SYS` trees that `#` does not match.
    public static let daemonACLs: [ACL] =
        ACL.readWrite("#") + ACL.readWrite("$CONTROL/dynamic-security/#") + ACL.readWrite("$CONTROL/vgw-meter/#")
        + ACL.read("$SYS/#")

    /// The operator's CLI: management of the core and of every VGW, and all status.
    public static let operatorACLs: [ACL] =
        [ACL(.publishClientSend, "mgmt/+/req")] + ACL.read("mgmt/+/res/#") + ACL.read("status/#")

    /// The complete plugin configuration for a state.
    public static func config(for state: AccessState) -> DynSecConfig {
        let running = Dictionary(uniqueKeysWithValues: state.providers.map { ($0.id, $0.running) })
        var clients: [DynSecConfig.Client] = [
            DynSecConfig.Client(
                username: state.daemon.username, clientid: nil, textName: "vgwd", password: state.daemon.password,
                roles: [daemonRole])
        ]
        clients += state.operators.map {
            DynSecConfig.Client(
                username: $0.username, clientid: nil, textName: "operator", password: $0.password,
                roles: [operatorRole])
        }
        // Each client holds its provider's role directly (no dynsec groups): one role per
        // VGW is all the sharing needed, and every extra object is another full rewrite of
        // the plugin's file when it changes.
        clients += state.clients.map { client in
            DynSecConfig.Client(
                username: client.identity.username, clientid: client.identity.clientID,
                password: client.password, disabled: running[client.identity.provider] != true,
                roles: [roleName(client.identity.provider)])
        }
        let roles =
            [
                DynSecConfig.Role(rolename: daemonRole, acls: daemonACLs),
                DynSecConfig.Role(rolename: operatorRole, acls: operatorACLs),
            ]
            + state.providers.map {
                DynSecConfig.Role(rolename: roleName($0.id), acls: roleACLs($0.id, grants: state.grants))
            }
        return DynSecConfig(clients: clients, groups: [], roles: roles)
    }
}
