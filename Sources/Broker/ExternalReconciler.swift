import Protocol
import Support

/// Brings a broker that `vgwd` does not start (an operator's own Mosquitto with the
/// dynamic security plugin) in line with the store, through `$CONTROL` commands.
///
/// The embedded broker never needs this: its plugin file is written from the store before
/// it starts. Here the broker keeps its own file, so the core reconciles at connect time:
/// default access, the core's roles, every `vgw-*` role and group, and group membership and
/// enabled state of every client. One limit: the plugin's `createClient` takes a password,
/// not a hash, so a provider client missing from the broker cannot be recreated from the
/// store; it is reported, and `client.remove` + `client.add` re-issues it.
public enum ExternalReconciler {
    public struct Report: Sendable, Equatable {
        /// Store clients the broker does not know (re-issue them).
        public var missingClients: [String] = []
        /// `vgw-*` groups and roles on the broker that the store does not have (deleted).
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
        for (identity, role, acls) in core {
            guard let password = passwords[identity.username] else {
                throw VGWError(.internalError, "no password for core identity \(identity.username)")
            }
            commands += [
                DynSecCommand("deleteClient", ["username": .string(identity.username)], tolerateFailure: true),
                DynSecCommand("deleteRole", ["rolename": .string(role)], tolerateFailure: true),
                DynSecCommand("createRole", ["rolename": .string(role), "acls": DynSecCommands.acls(acls)]),
                DynSecCommand(
                    "createClient",
                    [
                        "username": .string(identity.username), "password": .string(password),
                        "roles": [["rolename": .string(role)]],
                    ]),
            ]
        }

        let wanted = Set(state.providers.map { AccessPolicy.groupName($0.id) })
        let groups = try await names(dynsec, "listGroups", "groups")
        let roles = try await names(dynsec, "listRoles", "roles")
        for group in groups where group.hasPrefix("vgw-") && !wanted.contains(group) {
            let members = try await dynsec.query(DynSecCommand("getGroup", ["groupname": .string(group)]))
            for member in members["group"]?["clients"]?.arrayValue ?? [] {
                if let username = member["username"]?.stringValue {
                    commands.append(
                        DynSecCommand("deleteClient", ["username": .string(username)], tolerateFailure: true))
                    report.removedStale.append("client \(username)")
                }
            }
            commands.append(DynSecCommand("deleteGroup", ["groupname": .string(group)], tolerateFailure: true))
            report.removedStale.append("group \(group)")
        }
        for role in roles where role.hasPrefix("vgw-") && !wanted.contains(role) {
            commands.append(DynSecCommand("deleteRole", ["rolename": .string(role)], tolerateFailure: true))
            report.removedStale.append("role \(role)")
        }
        for provider in state.providers {
            commands += DynSecCommands.createProvider(provider.id, grants: state.grants)
        }
        let known = Set(try await names(dynsec, "listClients", "clients"))
        let running = Dictionary(uniqueKeysWithValues: state.providers.map { ($0.id, $0.running) })
        for client in state.clients {
            let username = client.identity.username
            guard known.contains(username) else {
                report.missingClients.append(username)
                continue
            }
            commands.append(
                DynSecCommand(
                    "addGroupClient",
                    [
                        "groupname": .string(AccessPolicy.groupName(client.identity.provider)),
                        "username": .string(username),
                    ]))
            commands += DynSecCommands.setEnabled(running[client.identity.provider] == true, clients: [client.identity])
        }
        try await dynsec.execute(commands)
        return report
    }

    private static func names(_ dynsec: DynSecClient, _ command: String, _ key: String) async throws -> [String] {
        let data = try await dynsec.query(DynSecCommand(command))
        return (data[key]?.arrayValue ?? []).compactMap { $0.stringValue ?? $0["username"]?.stringValue }
    }
}
