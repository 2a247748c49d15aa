import Foundation
import Protocol
import Support

/// The declarative form of a gateway: providers, their clients and state, and grants.
/// `vgw apply -f` makes the gateway match it; `vgw export` writes the current one.
///
/// ```json
/// {"providers": {"homeauto": {"state": "running", "clients": ["hub"]}},
///  "grants": [{"owner": "homeauto", "grantee": "health", "filter": "presence/#", "access": "read"}]}
/// ```
public struct PolicyDocument: Codable, Sendable, Equatable {
    public struct Provider: Codable, Sendable, Equatable {
        public var state: String?
        public var clients: [String]?
        /// Messages and payload bytes per second (0 or absent = unlimited).
        public var quota: QuotaSpec?

        public init(state: String? = "running", clients: [String]? = [], quota: QuotaSpec? = nil) {
            self.state = state
            self.clients = clients
            self.quota = quota
        }
    }

    public struct QuotaSpec: Codable, Sendable, Equatable {
        public var messagesPerSecond: Double?
        public var bytesPerSecond: Double?
        public init(messagesPerSecond: Double? = nil, bytesPerSecond: Double? = nil) {
            self.messagesPerSecond = messagesPerSecond
            self.bytesPerSecond = bytesPerSecond
        }
        var isUnlimited: Bool { (messagesPerSecond ?? 0) == 0 && (bytesPerSecond ?? 0) == 0 }
    }

    public struct GrantSpec: Codable, Sendable, Equatable, Hashable {
        public var owner: String
        public var grantee: String
        public var filter: String
        public var access: String?

        public init(owner: String, grantee: String, filter: String, access: String? = "read") {
            self.owner = owner
            self.grantee = grantee
            self.filter = filter
            self.access = access
        }

        var key: String { "\(owner) \(grantee) \(filter) \(access ?? "read")" }
    }

    public var providers: [String: Provider]
    public var grants: [GrantSpec]?

    public init(providers: [String: Provider], grants: [GrantSpec]? = nil) {
        self.providers = providers
        self.grants = grants
    }

    /// Decodes and checks every name before anything is sent, so a typo fails the whole
    /// file instead of applying half of it.
    public static func decode(_ data: Data) throws -> PolicyDocument {
        let document: PolicyDocument
        do {
            document = try JSONDecoder().decode(PolicyDocument.self, from: data)
        } catch {
            throw VGWError(.invalidArgument, "policy is not valid: \(error)")
        }
        for (id, provider) in document.providers {
            try ProviderID.validate(id)
            if let state = provider.state, state != "running" && state != "stopped" {
                throw VGWError(.invalidArgument, "policy: provider \(id): state must be running or stopped")
            }
            for client in provider.clients ?? [] { try ClientName.validate(client) }
        }
        for grant in document.grants ?? [] {
            try GrantFilter.validate(grant.filter)
            guard GrantAccess(rawValue: grant.access ?? "read") != nil else {
                throw VGWError(.invalidArgument, "policy: grant access must be read, write or readwrite")
            }
            if grant.owner != ProviderID.core.rawValue, document.providers[grant.owner] == nil {
                throw VGWError(.invalidArgument, "policy: grant owner \(grant.owner) is not a provider of the policy")
            }
            if grant.grantee != "*", document.providers[grant.grantee] == nil {
                throw VGWError(.invalidArgument, "policy: grantee \(grant.grantee) is not a provider of the policy")
            }
        }
        return document
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// One change `apply` makes, in order, as a management request.
public struct PolicyStep: Sendable, Equatable {
    public var description: String
    public var op: ManagementOperation
    public var args: [String: JSONValue]
}

/// The difference between a policy and a gateway's current state.
public enum PolicyPlanner {
    /// Steps that turn `current` into `wanted`. Without `prune`, what exists but is not in
    /// the file is kept (and reported by `extras`), like `kubectl apply` without `--prune`.
    public static func plan(
        current: PolicyDocument, grantIDs: [String: Int], wanted: PolicyDocument, prune: Bool
    ) -> [PolicyStep] {
        var steps: [PolicyStep] = []
        func p(_ id: String) -> JSONValue { .string(id) }
        let wantedGrants = Set((wanted.grants ?? []).map(\.key))
        // Grants go first when revoked (before their providers disappear) and last when added.
        if prune {
            for grant in current.grants ?? [] where !wantedGrants.contains(grant.key) {
                if let id = grantIDs[grant.key] {
                    steps.append(
                        PolicyStep(
                            description: "- grant \(grant.key)", op: .grantRevoke, args: ["id": .number(Double(id))]))
                }
            }
            for id in current.providers.keys.sorted() where wanted.providers[id] == nil {
                steps.append(PolicyStep(description: "- provider \(id)", op: .vgwDelete, args: ["provider": p(id)]))
            }
        }
        for id in wanted.providers.keys.sorted() {
            let want = wanted.providers[id] ?? .init()
            let have = current.providers[id]
            if have == nil {
                steps.append(PolicyStep(description: "+ provider \(id)", op: .vgwCreate, args: ["provider": p(id)]))
            }
            let haveClients = Set(have?.clients ?? [])
            let wantClients = Set(want.clients ?? [])
            for client in wantClients.subtracting(haveClients).sorted() {
                steps.append(
                    PolicyStep(
                        description: "+ client \(id).\(client)", op: .clientAdd,
                        args: ["provider": p(id), "name": .string(client)]))
            }
            if prune {
                for client in haveClients.subtracting(wantClients).sorted() {
                    steps.append(
                        PolicyStep(
                            description: "- client \(id).\(client)", op: .clientRemove,
                            args: ["provider": p(id), "name": .string(client)]))
                }
            }
            let wantQuota = want.quota ?? PolicyDocument.QuotaSpec()
            let haveQuota = have?.quota ?? PolicyDocument.QuotaSpec()
            if (wantQuota.messagesPerSecond ?? 0, wantQuota.bytesPerSecond ?? 0)
                != (haveQuota.messagesPerSecond ?? 0, haveQuota.bytesPerSecond ?? 0)
            {
                steps.append(
                    PolicyStep(
                        description:
                            "~ quota \(id) \(Int(wantQuota.messagesPerSecond ?? 0)) msg/s \(Int(wantQuota.bytesPerSecond ?? 0)) B/s",
                        op: .quotaSet,
                        args: [
                            "provider": p(id), "messagesPerSecond": .number(wantQuota.messagesPerSecond ?? 0),
                            "bytesPerSecond": .number(wantQuota.bytesPerSecond ?? 0),
                        ]))
            }
            let wantState = want.state ?? "running"
            if (have?.state ?? "running") != wantState {
                steps.append(
                    PolicyStep(
                        description: "~ provider \(id) \(wantState)", op: wantState == "stopped" ? .vgwStop : .vgwStart,
                        args: ["provider": p(id)]))
            }
        }
        let currentGrants = Set((current.grants ?? []).map(\.key))
        for grant in wanted.grants ?? [] where !currentGrants.contains(grant.key) {
            steps.append(
                PolicyStep(
                    description: "+ grant \(grant.key)", op: .grantCreate,
                    args: [
                        "owner": .string(grant.owner), "grantee": .string(grant.grantee),
                        "filter": .string(grant.filter),
                        "access": .string(grant.access ?? "read"),
                    ]))
        }
        return steps
    }

    /// What exists but is not in the policy (kept unless `--prune`).
    public static func extras(current: PolicyDocument, wanted: PolicyDocument) -> [String] {
        var extras: [String] = []
        for id in current.providers.keys.sorted() {
            guard let want = wanted.providers[id] else {
                extras.append("provider \(id)")
                continue
            }
            let more = Set(current.providers[id]?.clients ?? []).subtracting(want.clients ?? [])
            extras += more.sorted().map { "client \(id).\($0)" }
        }
        let wanted = Set((wanted.grants ?? []).map(\.key))
        extras += (current.grants ?? []).filter { !wanted.contains($0.key) }.map { "grant \($0.key)" }
        return extras
    }
}

extension ManagementClient {
    /// The gateway's current state as a policy, with each grant's id by its key.
    public func exportPolicy() async throws -> (document: PolicyDocument, grantIDs: [String: Int]) {
        var providers: [String: PolicyDocument.Provider] = [:]
        for entry in try await call(ManagementOperation.vgwList.rawValue)["providers"]?.arrayValue ?? [] {
            guard let id = entry["provider"]?.stringValue else { continue }
            providers[id] = PolicyDocument.Provider(state: entry["state"]?.stringValue, clients: [])
        }
        for client in try await call(ManagementOperation.clientList.rawValue)["clients"]?.arrayValue ?? [] {
            guard let id = client["provider"]?.stringValue, let name = client["name"]?.stringValue,
                client["kind"]?.stringValue != "bundle"
            else { continue }
            providers[id]?.clients?.append(name)
        }
        for id in providers.keys {
            providers[id]?.clients?.sort()
            let quota = try await call(ManagementOperation.quotaGet.rawValue, ["provider": .string(id)])
            let spec = PolicyDocument.QuotaSpec(
                messagesPerSecond: quota["messagesPerSecond"]?.numberValue,
                bytesPerSecond: quota["bytesPerSecond"]?.numberValue)
            providers[id]?.quota = spec.isUnlimited ? nil : spec
        }
        var grants: [PolicyDocument.GrantSpec] = []
        var ids: [String: Int] = [:]
        for grant in try await call(ManagementOperation.grantList.rawValue)["grants"]?.arrayValue ?? [] {
            guard let owner = grant["owner"]?.stringValue, let grantee = grant["grantee"]?.stringValue,
                let filter = grant["filter"]?.stringValue, let id = grant["id"]?.intValue
            else { continue }
            let spec = PolicyDocument.GrantSpec(
                owner: owner, grantee: grantee, filter: filter, access: grant["access"]?.stringValue)
            grants.append(spec)
            ids[spec.key] = id
        }
        return (PolicyDocument(providers: providers, grants: grants), ids)
    }
}
