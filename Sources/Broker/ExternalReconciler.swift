import Protocol
import Support

/// Brings a broker that `vgwd` does not start (an operator's own Mosquitto with the
/// dynamic security plugin) in line with the store, through `$CONTROL` commands.
///
/// The embedded broker never needs this: its plugin file is written from the store before
/// it starts. Here the broker keeps its own file, so the core reconciles at connect time:
/// default access, the core's roles, every `vgw-*` role, and the role and enabled state of
/// every client. One limit: the plugin's `createClient` takes a password,
/// not a hash, so a provider client missing from the broker cannot be recreated from the
/// store; it is reported, and `client.remove` + `client.add` re-issues it.
public enum ExternalReconciler {
    public struct Report: Sendable, Equatable {
        /// Store clients the broker does not know (re-issue them).
        public var missingClients: [String] = []
        /// `vgw-*` roles (and their providers' clients) the store does not have (deleted).
        public var removedStale: [String] = []
    }

    /// `passwords` holds the plain passwords of the core identities (daemon, operator),
    /// which are (re)created with them.
    public static func reconcile(
        state: AccessState, passwords: [String: String], dynsec: DynSecClient
    ) async throws -> Report {
        var report = Report()
        var commands: [DynSecCommand] = [
            DynSecCommand(
                "setDefaultACLAccess",
                [
                    "acls": [
                        ["acltype": "publishClientSend", "allow": false],
                        ["acltype": "publishClientReceive", "allow": false],
                        ["acltype": "subscribe", "allow": false],
                        ["acltype": "unsubscribe", "allow": true],
                    ]
                ])
        ]
        let core =
            [(state.daemon, AccessPolicy.daemonRole, AccessPolicy.daemonACLs)]
            + state.operators.map { ($0, AccessPolicy.operatorRole, AccessPolicy.operatorACLs) }
        let roles = try await names(dynsec, "listRoles", "roles")
        for (identity, role, acls) in core {
            guard let password = passwords[identity.username] else {
                throw VGWError(.internalError, "no password for core identity \(identity.username)")
            }
            commands += [DynSecCommand("deleteClient", ["username": .string(identity.username)], tolerateFailure: true)]
            commands += try await ensureRole(role, acls: acls, existing: roles, dynsec: dynsec)
            commands.append(
                DynSecCommand(
                    "createClient",
                    [
                        "username": .string(identity.username), "password": .string(password),
                        "roles": [["rolename": .string(role)]],
                    ]))
        }

        let wanted = Set(state.providers.map { AccessPolicy.roleName($0.id) })
        let known = try await names(dynsec, "listClients", "clients")
        for role in roles where role.hasPrefix("vgw-") && !wanted.contains(role) {
            // A role of ours for a provider the store no longer has: its clients go with it
            // (only `<p>.` usernames of that very provider, never anyone else's).
            let prefix = String(role.dropFirst("vgw-".count)) + "."
            for username in known where username.hasPrefix(prefix) {
                commands.append(DynSecCommand("deleteClient", ["username": .string(username)], tolerateFailure: true))
                report.removedStale.append("client \(username)")
            }
            commands.append(DynSecCommand("deleteRole", ["rolename": .string(role)], tolerateFailure: true))
            report.removedStale.append("role \(role)")
        }
        for provider in state.providers {
            commands += try await ensureRole(
                AccessPolicy.roleName(provider.id), acls: AccessPolicy.roleACLs(provider.id, grants: state.grants),
                existing: roles, dynsec: dynsec)
        }
        let existing = Set(known)
        let running = Dictionary(uniqueKeysWithValues: state.providers.map { ($0.id, $0.running) })
        for client in state.clients {
            let username = client.identity.username
            guard existing.contains(username) else {
                report.missingClients.append(username)
                continue
            }
            // The client may have lost its role (or never had it): give it (again).
            commands.append(
                DynSecCommand(
                    "addClientRole",
                    [
                        "username": .string(username),
                        "rolename": .string(AccessPolicy.roleName(client.identity.provider)),
                    ], tolerateFailure: true))
            commands += DynSecCommands.setEnabled(running[client.identity.provider] == true, clients: [client.identity])
        }
        try await dynsec.execute(commands)
        return report
    }

    /// A role with exactly `acls`: created if missing, else changed ACL by ACL. Never
    /// deleted and re-created: Mosquitto 2.0 crashes later when a role that clients hold
    /// is deleted (eclipse-mosquitto/mosquitto#2660).
    public static func ensureRole(_ role: String, acls: [ACL], existing: [String], dynsec: DynSecClient) async throws
        -> [DynSecCommand]
    {
        guard existing.contains(role) else {
            return [DynSecCommand("createRole", ["rolename": .string(role), "acls": DynSecCommands.acls(acls)])]
        }
        let current = try await dynsec.query(DynSecCommand("getRole", ["rolename": .string(role)]))
        let have = (current["role"]?["acls"]?.arrayValue ?? []).compactMap { entry -> ACL? in
            guard let kind = entry["acltype"]?.stringValue.flatMap(ACL.Kind.init(rawValue:)),
                let topic = entry["topic"]?.stringValue
            else { return nil }
            return ACL(kind, topic, allow: entry["allow"]?.boolValue ?? true)
        }
        let wanted = acls.map { ACL($0.acltype, $0.topic, allow: $0.allow) }
        return DynSecCommands.updateACLs(role: role, from: have, to: wanted)
    }

    private static func names(_ dynsec: DynSecClient, _ command: String, _ key: String) async throws -> [String] {
        let data = try await dynsec.query(DynSecCommand(command))
        return (data[key]?.arrayValue ?? []).compactMap { $0.stringValue ?? $0["username"]?.stringValue }
    }
}
