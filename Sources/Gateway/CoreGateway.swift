import Broker
import Crypto
import Foundation
import Protocol
import Store
import Support

/// Publishes a message on the home broker; the daemon gives the gateway its connection.
public typealias Publish = @Sendable (_ topic: String, _ payload: [UInt8], _ retain: Bool) async throws -> Void

/// The core gateway: serves the management operations, keeps the store and the broker's
/// ACLs in step. An actor, so operations are applied one at a time and a check ("does
/// this provider exist?") stays true for the rest of its operation.
///
/// Every change goes broker first, store second: if the broker refuses, nothing is
/// recorded; if the store then fails, the next broker start (which writes the ACLs from
/// the store) drops the orphan.
public actor CoreGateway {
    /// Who sent a request, decided by the topic it arrived on (the broker's ACLs decide
    /// who may publish there): the operator on `mgmt/core/req`, a provider on its own.
    public enum Caller: Sendable, Equatable {
        case `operator`
        case provider(ProviderID)
    }

    let store: Store
    let bundles: BundleManager
    private let dynsec: DynSecClient
    private let publish: Publish
    private let homeID: String
    private let brokerAddress: @Sendable () -> (host: String, port: UInt16)
    private let startedAt = Date()
    private let logger = Logger("gateway")
    /// Messages and bytes per provider, from the broker's metering (see `ProviderTraffic`).
    let trafficSource: TrafficSource
    /// The broker's metering plugin (quotas); nil when it is not loaded.
    let meter: MeterClient?
    /// Outstanding key-possession challenges, by provider (5 minutes each).
    private var challenges: [String: (challenge: String, expires: ContinuousClock.Instant)] = [:]
    /// Recent CPU samples per provider, for `perf.get`'s window (see `PerfHistory`).
    var perfHistory: [String: PerfHistory] = [:]
    /// The periodic sampler (`startSampler`), cancelled by `stopSampler`.
    var sampler: Task<Void, Never>?

    public init(
        store: Store, bundles: BundleManager, dynsec: DynSecClient, homeID: String, publish: @escaping Publish,
        brokerAddress: @escaping @Sendable () -> (host: String, port: UInt16),
        trafficSource: @escaping TrafficSource = { [:] }, meter: MeterClient? = nil
    ) {
        self.trafficSource = trafficSource
        self.meter = meter
        self.store = store
        self.bundles = bundles
        self.dynsec = dynsec
        self.publish = publish
        self.homeID = homeID
        self.brokerAddress = brokerAddress
    }

    // MARK: Requests

    /// Decodes, authorises and runs one request; always returns a response (errors included).
    /// `remote`: the request came through the cloud (its envelope's signature is already
    /// checked); some operations then ask for more, e.g. a signed bundle archive.
    public func handle(payload: [UInt8], target: String, limits: RequestLimits, remote: Bool = false) async -> (
        Response, replyTo: String?
    ) {
        let request: Request
        switch Request.decode(payload, maxSize: max(limits.maxRequestBytes, limits.maxInstallRequestBytes)) {
        case .success(let decoded): request = decoded
        case .failure(let failure):
            logger.warning(
                "refused a malformed request",
                ["target": target, "code": failure.error.code, "error": failure.error.message])
            return (
                Response.failure(id: failure.partial.id, error: failure.error, home: homeID), failure.partial.replyTo
            )
        }
        let caller: Caller
        if target == ProviderID.core.rawValue {
            caller = .operator
        } else if let provider = ProviderID(rawValue: target) {
            caller = .provider(provider)
        } else {
            let error = VGWError(.notFound, "no virtual gateway \(target)")
            return (Response.failure(id: request.id, error: error, home: homeID), request.replyTo)
        }
        if payload.count > limits.maxRequestBytes, request.op != ManagementOperation.bundleInstall.rawValue {
            let error = VGWError(
                .tooLarge, "request is \(payload.count) bytes, over the limit of \(limits.maxRequestBytes)")
            return (Response.failure(id: request.id, error: error, home: homeID), request.replyTo)
        }
        do {
            let result = try await perform(request, caller: caller, remote: remote)
            logger.info("served", ["op": request.op, "caller": "\(caller)", "id": request.id])
            return (Response.success(id: request.id, result: result, home: homeID), request.replyTo)
        } catch {
            let error = VGWError.wrap(error, .internalError, "internal error")
            let level: Logger.Level = error.code == .internalError || error.code == .storage ? .error : .info
            logger.log(
                level, "refused",
                ["op": request.op, "caller": "\(caller)", "code": error.code, "error": error.description])
            return (Response.failure(id: request.id, error: error, home: homeID), request.replyTo)
        }
    }

    func perform(_ request: Request, caller: Caller, remote: Bool = false) async throws -> JSONValue {
        guard let op = ManagementOperation(rawValue: request.op) else {
            throw VGWError(.unknownOp, "unknown op \(request.op)")
        }
        let args = Arguments(request.args)
        // A provider's requests act on its own VGW: the topic names it, and naming another
        // one is answered exactly as a VGW that does not exist.
        let scoped: ProviderID?
        switch caller {
        case .operator:
            scoped = nil
        case .provider(let provider):
            guard op.scope == .coreAndProvider else { throw VGWError(.unknownOp, "unknown op \(request.op)") }
            guard try store.provider(provider.rawValue) != nil else {
                throw VGWError(.notFound, "no virtual gateway \(provider)")
            }
            if let named = try args.optionalString("provider"), named != provider.rawValue {
                throw VGWError(.notFound, "no virtual gateway \(named)")
            }
            scoped = provider
        }
        func target() throws -> ProviderID { try scoped ?? args.provider() }

        switch op {
        case .vgwCreate:
            try args.allowOnly(["provider"])
            return try await createProvider(args.provider())
        case .vgwDelete:
            try args.allowOnly(["provider"])
            return try await deleteProvider(args.provider())
        case .vgwStart:
            try args.allowOnly(["provider"])
            return try await setRunning(args.provider(), true)
        case .vgwStop:
            try args.allowOnly(["provider"])
            return try await setRunning(args.provider(), false)
        case .vgwList:
            try args.allowOnly([])
            let counts = try store.clientCounts()
            return try JSONValue(
                encoding: ["providers": try store.providers().map { summary($0, clients: counts[$0.id] ?? 0) }])
        case .vgwIsAlive:
            try args.allowOnly(["provider"])
            let record = try existing(target())
            return ["provider": .string(record.id), "alive": .bool(record.state == .running)]
        case .vgwShow:
            try args.allowOnly(["provider"])
            let record = try existing(target())
            return try JSONValue(encoding: detail(record))
        case .clientAdd:
            try args.allowOnly(["provider", "name"])
            return try await addClient(args.provider(), args.clientName())
        case .clientRemove:
            try args.allowOnly(["provider", "name"])
            return try await removeClient(args.provider(), args.clientName())
        case .clientList:
            try args.allowOnly(["provider"])
            let provider: ProviderID? = try scoped ?? args.optionalProvider()
            if let provider { _ = try existing(provider) }
            return try JSONValue(encoding: [
                "clients": try store.clients(provider: provider?.rawValue).map(ClientView.init)
            ])
        case .bundleInstall:
            try args.allowOnly(["provider", "archive", "start", "signature"])
            let provider = try target()
            let record = try existing(provider)
            guard let archive = Base64.decode(try args.string("archive")) else {
                throw VGWError(.invalidArgument, "argument archive must be base64")
            }
            try verifyBundleSignature(
                archive, provider: provider, signature: try args.optionalString("signature"), required: remote)
            let start = try args.optionalBool("start") ?? false
            return try JSONValue(
                encoding: await bundles.install(
                    provider: provider, archive: archive, start: start, vgwRunning: record.state == .running))
        case .bundleUninstall:
            try args.allowOnly(["provider", "name"])
            let provider = try target()
            _ = try existing(provider)
            let name = try args.string("name")
            try await bundles.uninstall(provider: provider, name: name)
            return ["provider": .string(provider.rawValue), "name": .string(name), "uninstalled": true]
        case .bundleStart:
            try args.allowOnly(["provider", "name"])
            let provider = try target()
            let record = try existing(provider)
            return try JSONValue(
                encoding: await bundles.start(
                    provider: provider, name: try args.string("name"), vgwRunning: record.state == .running))
        case .bundleStop:
            try args.allowOnly(["provider", "name"])
            let provider = try target()
            _ = try existing(provider)
            return try JSONValue(encoding: await bundles.stop(provider: provider, name: try args.string("name")))
        case .bundleList:
            try args.allowOnly(["provider"])
            let provider = try target()
            _ = try existing(provider)
            return try JSONValue(encoding: ["bundles": try await bundles.list(provider: provider)])
        case .bundleIsAlive:
            try args.allowOnly(["provider", "name"])
            let provider = try target()
            _ = try existing(provider)
            let name = try args.string("name")
            let alive = try await bundles.isAlive(provider: provider, name: name)
            return ["provider": .string(provider.rawValue), "name": .string(name), "alive": .bool(alive)]
        case .bundleLogs:
            try args.allowOnly(["provider", "name", "lines"])
            let provider = try target()
            _ = try existing(provider)
            let lines = try args.optionalInt("lines") ?? 100
            guard (1...1000).contains(lines) else {
                throw VGWError(.invalidArgument, "argument lines must be 1 to 1000")
            }
            let logs = try await bundles.logs(provider: provider, name: try args.string("name"), lines: lines)
            return ["stdout": .string(logs.stdout), "stderr": .string(logs.stderr)]
        case .grantCreate:
            try args.allowOnly(["owner", "grantee", "filter", "access"])
            let ownerText = try args.string("owner")
            let owner = ownerText == ProviderID.core.rawValue ? ProviderID.core : try ProviderID(ownerText)
            return try await createGrant(owner: owner, args)
        case .grantOffer:
            try args.allowOnly(["provider", "grantee", "filter", "access"])
            let owner = try target()
            _ = try existing(owner)
            return try await createGrant(owner: owner, args)
        case .grantRevoke:
            try args.allowOnly(["provider", "id"])
            guard let id = try args.optionalInt("id") else { throw VGWError(.invalidArgument, "missing argument id") }
            // A provider revokes only what it gave; anything else does not exist for it.
            let owner = try scoped ?? args.optionalProvider()
            guard let grant = try store.grant(id: id), owner == nil || grant.owner == owner else {
                throw VGWError(.notFound, "no grant \(id)")
            }
            try await revokeGrants([grant])
            return try JSONValue(encoding: grant)
        case .perfGet, .acctNotify, .acctUsage:
            let provider = try target()
            _ = try existing(provider)
            return try await accounting(op, provider: provider, args: args)
        case .quotaSet:
            try args.allowOnly(["provider", "messagesPerSecond", "bytesPerSecond"])
            let provider = try args.provider()
            _ = try existing(provider)
            func rate(_ name: String) throws -> Double {
                guard let value = args.values[name] else { return 0 }
                guard let number = value.numberValue, number >= 0, number <= 1e12 else {
                    throw VGWError(.invalidArgument, "argument \(name) must be a number from 0 (unlimited) to 1e12")
                }
                return number
            }
            let quota = Quota(
                messagesPerSecond: try rate("messagesPerSecond"), bytesPerSecond: try rate("bytesPerSecond"))
            guard let meter else {
                throw VGWError(.unavailable, "quotas need the metering plugin (libvgw_meter.so), which is not loaded")
            }
            try await meter.setQuota(
                provider: provider.rawValue, messagesPerSecond: quota.messagesPerSecond,
                bytesPerSecond: quota.bytesPerSecond)
            try store.setSetting(
                "quota." + provider.rawValue, String(decoding: try JSONCoding.encoder.encode(quota), as: UTF8.self))
            return try JSONValue(encoding: quota)
        case .quotaGet:
            try args.allowOnly(["provider"])
            let provider = try target()
            _ = try existing(provider)
            return try JSONValue(encoding: try quota(of: provider))
        case .securitySetCredential:
            try args.allowOnly(["provider", "publicKey"])
            let owner = try keyOwner(args)
            guard let key = Base64.decode(try args.string("publicKey")), key.count == Ed25519.publicKeyBytes else {
                throw VGWError(.invalidArgument, "argument publicKey must be a base64 ed25519 public key (32 bytes)")
            }
            try RequestAuthenticator(store: store, homeID: homeID).register(publicKey: key, for: owner)
            return ["provider": .string(owner), "registered": true]
        case .securityChallenge:
            try args.allowOnly(["provider", "challenge", "signature"])
            let owner = try keyOwner(args)
            guard let key = try RequestAuthenticator(store: store, homeID: homeID).publicKey(of: owner) else {
                throw VGWError(.notFound, "no key registered for \(owner)")
            }
            guard let signatureText = try args.optionalString("signature") else {
                // Step one: a fresh challenge to sign.
                let challenge = Base64.encode(try SecureRandom.bytes(32))
                challenges[owner] = (challenge, ContinuousClock.now + .seconds(300))
                return ["provider": .string(owner), "challenge": .string(challenge)]
            }
            // Step two: the signature over the challenge, by the registered key.
            guard let pending = challenges.removeValue(forKey: owner), pending.expires > ContinuousClock.now,
                try args.string("challenge") == pending.challenge
            else { throw VGWError(.notFound, "no outstanding challenge for \(owner); ask for one first") }
            guard let signature = Base64.decode(signatureText),
                Ed25519.verify(signature: signature, message: Array(pending.challenge.utf8), publicKey: key)
            else { throw VGWError(RequestAuthenticator.badSignature, "the signature does not match \(owner)'s key") }
            return ["provider": .string(owner), "verified": true]
        case .grantList:
            try args.allowOnly(["provider"])
            let viewer = try scoped ?? args.optionalProvider()
            let grants = try store.grants().filter { grant in
                guard let viewer else { return true }
                return grant.owner == viewer || grant.applies(to: viewer)
            }
            return try JSONValue(encoding: ["grants": grants])
        case .gatewayStatus:
            try args.allowOnly([])
            let address = brokerAddress()
            return try JSONValue(
                encoding: GatewayStatus(
                    home: homeID, version: Version.current, startedAt: startedAt,
                    broker: .init(host: address.host, port: address.port),
                    providers: try store.providers().count, clients: try store.clients(provider: nil).count))
        }
    }

    // MARK: Operations

    private func createProvider(_ provider: ProviderID) async throws -> JSONValue {
        guard try store.provider(provider.rawValue) == nil else {
            throw VGWError(.alreadyExists, "virtual gateway \(provider) already exists")
        }
        let grants = try store.grants()
        let roles = try await dynsec.query(DynSecCommand("listRoles"))["roles"]?.arrayValue?.compactMap(\.stringValue)
        try await dynsec.execute(
            ExternalReconciler.ensureRole(
                AccessPolicy.roleName(provider), acls: AccessPolicy.roleACLs(provider, grants: grants),
                existing: roles ?? [], dynsec: dynsec))
        let record = try store.createProvider(provider.rawValue, state: .running)
        await publishState(record)
        await publishGrants(for: [provider], grants: grants)
        return try JSONValue(encoding: summary(record))
    }

    private func deleteProvider(_ provider: ProviderID) async throws -> JSONValue {
        _ = try existing(provider)
        await bundles.removeAll(provider: provider)
        let involved = try store.grants().filter { $0.owner == provider || $0.grantee == .provider(provider) }
        try await revokeGrants(involved)
        let clients = try store.clients(provider: provider.rawValue).compactMap(identity)
        try await dynsec.execute(DynSecCommands.deleteProvider(provider, clients: clients))
        let removed = try store.deleteProvider(provider.rawValue)
        await clearStatus(provider)
        return [
            "provider": .string(provider.rawValue), "deleted": true, "clientsRemoved": .number(Double(removed.count)),
        ]
    }

    private func setRunning(_ provider: ProviderID, _ running: Bool) async throws -> JSONValue {
        var record = try existing(provider)
        let wanted: ProviderState = running ? .running : .stopped
        if record.state != wanted {
            if !running { await bundles.stopAll(provider: provider) }
            let clients = try store.clients(provider: provider.rawValue).compactMap(identity)
            try await dynsec.execute(DynSecCommands.setEnabled(running, clients: clients))
            try store.setProviderState(provider.rawValue, wanted)
            record.state = wanted
            await publishState(record)
            if running { await bundles.startDesired(provider: provider) }
        }
        return try JSONValue(encoding: summary(record))
    }

    private func addClient(_ provider: ProviderID, _ name: ClientName) async throws -> JSONValue {
        guard !name.rawValue.hasPrefix("bundle-") else {
            throw VGWError(.reserved, "client names starting with bundle- are reserved for bundles' own identities")
        }
        let record = try existing(provider)
        guard try store.client(provider: provider.rawValue, name: name.rawValue) == nil else {
            throw VGWError(.alreadyExists, "client \(name) of \(provider) already exists")
        }
        let identity = ClientIdentity(provider: provider, name: name)
        let password = try SecureRandom.token()
        let hash = try PasswordHash.make(password: password)
        try await dynsec.execute(
            DynSecCommands.createClient(identity, password: password, enabled: record.state == .running))
        let client = ClientRecord(
            provider: provider.rawValue, name: name.rawValue, username: identity.username, clientID: identity.clientID,
            passwordHash: StoredPassword(hash: hash.hash, salt: hash.salt, iterations: hash.iterations),
            kind: "device", createdAt: Date())
        try store.addClient(client)
        await publishState(record)
        let address = brokerAddress()
        return try JSONValue(
            encoding: IssuedCredentials(
                provider: provider.rawValue, name: name.rawValue, username: identity.username,
                clientId: identity.clientID, password: password, host: address.host, port: address.port,
                topicPrefix: Topics.namespace(provider) + "/"))
    }

    private func removeClient(_ provider: ProviderID, _ name: ClientName) async throws -> JSONValue {
        let record = try existing(provider)
        guard try store.client(provider: provider.rawValue, name: name.rawValue) != nil else {
            throw VGWError(.notFound, "no client \(name) of \(provider)")
        }
        try await dynsec.execute(DynSecCommands.deleteClient(ClientIdentity(provider: provider, name: name)))
        _ = try store.removeClient(provider: provider.rawValue, name: name.rawValue)
        await publishState(record)
        return ["provider": .string(provider.rawValue), "name": .string(name.rawValue), "removed": true]
    }

    /// A bundle that comes through the cloud must be signed by its provider's registered
    /// key (Ed25519 over the archive bytes, `vgw bundle sign`); a signature given locally is
    /// checked too.
    private func verifyBundleSignature(_ archive: [UInt8], provider: ProviderID, signature: String?, required: Bool)
        throws
    {
        guard let signature else {
            if required { throw VGWError(RequestAuthenticator.unauthenticated, "remote bundles must be signed") }
            return
        }
        guard let key = try RequestAuthenticator(store: store, homeID: homeID).publicKey(of: provider.rawValue) else {
            throw VGWError(RequestAuthenticator.unauthenticated, "no key registered for \(provider)")
        }
        guard let bytes = Base64.decode(signature), Ed25519.verify(signature: bytes, message: archive, publicKey: key)
        else { throw VGWError(RequestAuthenticator.badSignature, "the bundle is not signed by \(provider)'s key") }
    }

    /// Whose key: a provider that exists, or `core` (the operator's own key).
    private func keyOwner(_ args: Arguments) throws -> String {
        let name = try args.string("provider")
        if name == ProviderID.core.rawValue { return name }
        return try existing(try ProviderID(name)).id
    }

    // MARK: Quotas

    /// A provider's quota (0 = unlimited), as stored.
    func quota(of provider: ProviderID) throws -> Quota {
        guard let text = try store.setting("quota." + provider.rawValue) else { return Quota() }
        return try JSONCoding.decoder.decode(Quota.self, from: Data(text.utf8))
    }

    /// Sends every stored quota to the metering plugin (its state lives in the broker's
    /// memory: after a broker restart it must be told again).
    public func pushQuotas() async {
        guard let meter else { return }
        for record in (try? store.providers()) ?? [] {
            guard let provider = ProviderID(rawValue: record.id), let quota = try? quota(of: provider),
                quota != Quota()
            else { continue }
            do {
                try await meter.setQuota(
                    provider: record.id, messagesPerSecond: quota.messagesPerSecond,
                    bytesPerSecond: quota.bytesPerSecond)
            } catch {
                logger.warning("cannot set a quota in the broker", ["provider": record.id, "error": "\(error)"])
            }
        }
    }

    /// Records an accounting event when the broker refused a provider's publishes for its
    /// quota since the last statistics (the throttle policy: over quota, publishes are
    /// dropped, and the provider's accounting says so).
    public func recordQuotaDenials(_ denied: [String: UInt64]) {
        for (provider, count) in denied where count > 0 {
            do {
                _ = try store.addEvent(
                    provider: provider, bundle: nil, kind: "quota.exceeded", detail: ["denied": .number(Double(count))])
            } catch {
                logger.warning("cannot record a quota event", ["provider": provider, "error": "\(error)"])
            }
        }
    }

    // MARK: Grants

    private func createGrant(owner: ProviderID, _ args: Arguments) async throws -> JSONValue {
        let grantee = try Grantee(try args.string("grantee"))
        let filter = try args.string("filter")
        try GrantFilter.validate(filter)
        guard let access = GrantAccess(rawValue: try args.optionalString("access") ?? "read") else {
            throw VGWError(.invalidArgument, "argument access must be read, write or readwrite")
        }
        if owner != .core { _ = try existing(owner) }
        if case .provider(let id) = grantee {
            guard id != owner else { throw VGWError(.invalidArgument, "a provider cannot grant to itself") }
            guard try store.provider(id.rawValue) != nil else {
                throw VGWError(.notFound, "no virtual gateway \(id) to grant to")
            }
        }
        let before = try store.grants()
        let grant = try store.addGrant(owner: owner, grantee: grantee, filter: filter, access: access)
        do {
            try await applyGrantChange(from: before, to: before + [grant])
        } catch {
            try? store.deleteGrant(id: grant.id)
            throw error
        }
        return try JSONValue(encoding: grant)
    }

    /// Removes grants from the store and from the broker, live subscriptions included.
    private func revokeGrants(_ revoked: [Grant]) async throws {
        guard !revoked.isEmpty else { return }
        let before = try store.grants()
        let ids = Set(revoked.map(\.id))
        try await applyGrantChange(from: before, to: before.filter { !ids.contains($0.id) })
        for grant in revoked { try? store.deleteGrant(id: grant.id) }
    }

    /// Changes the roles of every provider whose ACLs differ between the two grant sets,
    /// in one batch, and republishes their `status/<p>/grants`.
    private func applyGrantChange(from old: [Grant], to new: [Grant]) async throws {
        var commands: [DynSecCommand] = []
        var affected: [ProviderID] = []
        for record in try store.providers() {
            guard let provider = ProviderID(rawValue: record.id) else { continue }
            let before = AccessPolicy.roleACLs(provider, grants: old)
            let after = AccessPolicy.roleACLs(provider, grants: new)
            guard before != after else { continue }
            commands += DynSecCommands.updateRole(provider, from: before, to: after)
            affected.append(provider)
        }
        try await dynsec.execute(commands)
        await publishGrants(for: affected, grants: new)
    }

    /// `status/<p>/grants`: what the provider's services may use beyond their namespace.
    private func publishGrants(for providers: [ProviderID], grants: [Grant]) async {
        for provider in providers {
            let received = grants.filter { $0.applies(to: provider) }
            do {
                let payload = try JSONCoding.encoder.encode(["grants": received])
                try await publish("status/\(provider.rawValue)/grants", Array(payload), true)
            } catch {
                logger.warning("cannot publish grants", ["provider": provider.rawValue, "error": "\(error)"])
            }
        }
    }

    // MARK: Status

    /// Starts the bundles meant to run of every running VGW (daemon start).
    public func startServices() async {
        for record in (try? store.providers()) ?? [] where record.state == .running {
            guard let provider = ProviderID(rawValue: record.id) else { continue }
            await bundles.startDesired(provider: provider)
        }
    }

    /// Publishes every VGW's retained status (at start, after the broker came back).
    public func publishAllStatus() async {
        do {
            for record in try store.providers() { await publishState(record) }
            await publishGrants(
                for: try store.providers().compactMap { ProviderID(rawValue: $0.id) }, grants: try store.grants())
        } catch {
            logger.error("cannot read providers to publish their status", ["error": "\(error)"])
        }
    }

    private func publishState(_ record: ProviderRecord) async {
        guard let provider = ProviderID(rawValue: record.id) else { return }
        do {
            let payload = try JSONCoding.encoder.encode(detail(record))
            try await publish(Topics.providerState(provider), Array(payload), true)
        } catch {
            logger.warning("cannot publish status", ["provider": record.id, "error": "\(error)"])
        }
    }

    /// Clears the retained status of a deleted VGW (an empty retained message deletes it).
    private func clearStatus(_ provider: ProviderID) async {
        do {
            try await publish(Topics.providerState(provider), [], true)
        } catch {
            logger.warning("cannot clear status", ["provider": provider.rawValue, "error": "\(error)"])
        }
    }

    // MARK: Helpers

    private func existing(_ provider: ProviderID) throws -> ProviderRecord {
        guard let record = try store.provider(provider.rawValue) else {
            throw VGWError(.notFound, "no virtual gateway \(provider)")
        }
        return record
    }

    private func identity(_ client: ClientRecord) -> ClientIdentity? {
        guard let provider = ProviderID(rawValue: client.provider), let name = ClientName(rawValue: client.name) else {
            return nil
        }
        return ClientIdentity(provider: provider, name: name)
    }

    private func summary(_ record: ProviderRecord) throws -> ProviderSummary {
        summary(record, clients: try store.clients(provider: record.id).count)
    }

    private func summary(_ record: ProviderRecord, clients: Int) -> ProviderSummary {
        ProviderSummary(
            provider: record.id, state: record.state.rawValue, createdAt: record.createdAt, clients: clients)
    }

    private func detail(_ record: ProviderRecord) throws -> ProviderDetail {
        ProviderDetail(
            provider: record.id, state: record.state.rawValue, createdAt: record.createdAt,
            namespace: "vgw/\(record.id)/#",
            clients: try store.clients(provider: record.id).filter { $0.kind != "bundle" }.map(\.name),
            bundles: try store.bundles(provider: record.id).map(\.name),
            isolation: "dynsec role vgw-\(record.id), default deny",
            resources: ProviderDetail.Resources(
                mechanism: bundles.mechanism, limits: bundles.settings.providerLimits.description))
    }
}

/// Request size limits: ordinary requests, and `bundle.install` which carries an archive.
public struct RequestLimits: Sendable {
    public var maxRequestBytes: Int
    public var maxInstallRequestBytes: Int
    public init(maxRequestBytes: Int, maxArchiveBytes: Int) {
        self.maxRequestBytes = maxRequestBytes
        // base64 (4/3) plus the envelope.
        self.maxInstallRequestBytes = maxArchiveBytes / 3 * 4 + 64 * 1024
    }
}

/// A provider's quota: messages and payload bytes per second it may publish (0 = unlimited).
public struct Quota: Codable, Sendable, Equatable {
    public var messagesPerSecond: Double = 0
    public var bytesPerSecond: Double = 0
    public init(messagesPerSecond: Double = 0, bytesPerSecond: Double = 0) {
        self.messagesPerSecond = messagesPerSecond
        self.bytesPerSecond = bytesPerSecond
    }
}

/// The version reported by `gateway.status` and `vgw --version`.
public enum Version {
    public static let current = "0.1.0"
}
