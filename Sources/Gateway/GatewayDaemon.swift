import Broker
import Crypto
import Foundation
import MQTT
import Protocol
import Store
import Support
import Synchronization

/// `vgwd`: the supervised broker, the store, the management endpoint, wired together.
///
/// `start()` returns once the gateway serves requests; `stop()` drains and stops the broker.
/// Tests run it in-process against a real broker; the `vgwd` executable wraps it with
/// signal handling.
public final class GatewayDaemon: Sendable {
    public let configuration: GatewayConfiguration
    public let directory: DataDirectory

    private struct Running: Sendable {
        var broker: BrokerSupervisor?
        var client: MQTTClient
        var gateway: CoreGateway
        var bundles: BundleManager
        var tasks: [Task<Void, Never>]
        var lock: DirectoryLock
        var port: UInt16
    }

    private let running = Mutex<Running?>(nil)
    private let logger = Logger("vgwd")

    public static let daemonUsername = "core.vgwd"
    public static let operatorUsername = "core.operator"

    public init(configuration: GatewayConfiguration) {
        self.configuration = configuration
        self.directory = DataDirectory(configuration.dataDirectory)
    }

    /// The port the broker really listens on (after any fallback).
    public var port: UInt16? { running.withLock { $0?.port } }
    /// The supervised broker (tests kill it to check the healing).
    public var broker: BrokerSupervisor? { running.withLock { $0?.broker } }

    public func start() async throws {
        try directory.create()
        checkServicesCanReachTheirFiles()
        let lock = try DirectoryLock(path: directory.pidFile)
        let store = try Store(path: directory.createPrivateFile(directory.store))
        Self.closeRunsLeftOpen(store)
        let external = configuration.externalBroker
        let host = external?.host ?? configuration.host
        let port = try external?.port ?? choosePort()
        let (operatorHash, operatorCredentials) = try ensureOperator(store: store, host: host, port: port)
        let daemonUsername = Self.daemonUsername
        let daemonPassword = try SecureRandom.token()
        let daemonIdentity = CoreIdentity(
            username: daemonUsername, password: try PasswordHash.make(password: daemonPassword))
        let operatorIdentity = CoreIdentity(username: Self.operatorUsername, password: operatorHash)
        if let external {
            let state = try Self.accessState(store: store, daemon: daemonIdentity, operator: operatorIdentity)
            try await reconcile(
                external, state: state,
                passwords: [daemonUsername: daemonPassword, Self.operatorUsername: operatorCredentials.password])
        }

        var broker: BrokerSupervisor?
        var metered = false
        if external == nil {
            let meterPlugin = configuration.meterPlugin ?? BrokerConfiguration.locateMeterPlugin()
            if meterPlugin == nil {
                logger.warning("metering plugin libvgw_meter.so not found: no traffic figures, no quotas")
            }
            var brokerConfiguration = BrokerConfiguration(
                host: configuration.host, port: port, directory: directory.brokerDirectory,
                mosquittoPath: configuration.mosquittoPath, maxPacketBytes: configuration.maxPacketBytes,
                meterPlugin: meterPlugin)
            brokerConfiguration.bridge = configuration.cloud.map { cloud in
                var bridge = cloud
                bridge.homeID = configuration.homeID
                return bridge
            }
            metered = meterPlugin != nil
            let dynsecFile = brokerConfiguration.dynsecFile
            let owner = brokerConfiguration.brokerUserOwner
            let logger = self.logger
            // Before every broker start and restart: the plugin's file, written from the store.
            let supervisor = BrokerSupervisor(configuration: brokerConfiguration) {
                let state = try Self.accessState(store: store, daemon: daemonIdentity, operator: operatorIdentity)
                try AccessPolicy.config(for: state).write(to: dynsecFile, owner: owner)
                logger.info(
                    "wrote broker access configuration from the store",
                    ["providers": state.providers.count, "clients": state.clients.count])
            }
            try await supervisor.start()
            broker = supervisor
        }

        let client: MQTTClient
        do {
            client = try MQTTClient(
                MQTTConfiguration(
                    host: Self.connectable(host), port: Int(port), clientID: daemonUsername, username: daemonUsername,
                    password: daemonPassword,
                    will: MQTTWill(
                        topic: Topics.gatewayStatus, payload: Array(#"{"state":"offline"}"#.utf8), retain: true)))
            try await client.connect()
        } catch {
            await broker?.stop()
            throw error
        }
        let dynsec = DynSecClient { payload in
            try await client.publish(topic: Topics.dynsecControl, payload: payload, qos: .atLeastOnce)
        }
        let meter =
            metered
            ? MeterClient { payload in
                try await client.publish(topic: MeterTopics.control, payload: payload, qos: .atLeastOnce)
            } : nil
        let traffic = Mutex<[String: ProviderTraffic]>([:])
        let injected = configuration.trafficSource
        let address = (host: Self.connectable(host), port: port)
        let publish: Publish = { topic, payload, retain in
            try await client.publish(topic: topic, payload: payload, qos: .atLeastOnce, retain: retain)
        }
        var bundleSettings = BundleManager.Settings(root: directory.bundles, brokerHost: address.host, brokerPort: port)
        bundleSettings.maxArchiveBytes = configuration.maxBundleBytes
        bundleSettings.tuning = configuration.serviceTuning
        bundleSettings.uidBase = configuration.serviceUIDBase
        let bundles = try BundleManager(settings: bundleSettings, store: store, dynsec: dynsec, publish: publish)
        let gateway = CoreGateway(
            store: store, bundles: bundles, dynsec: dynsec, homeID: configuration.homeID, publish: publish,
            brokerAddress: { address },
            trafficSource: {
                let measured = traffic.withLock { $0 }
                return measured.merging(await injected()) { _, given in given }
            }, meter: meter)
        var tasks: [Task<Void, Never>] = []
        let (requests, requestSink) = AsyncStream.makeStream(of: MQTTMessage.self)
        let authenticator = RequestAuthenticator(store: store, homeID: configuration.homeID)
        let limits = RequestLimits(
            maxRequestBytes: configuration.maxRequestBytes, maxArchiveBytes: configuration.maxBundleBytes)
        // The reader never waits on the gateway: dynsec answers go straight to their
        // waiter, requests queue for the worker, which may itself be awaiting dynsec.
        tasks.append(
            Task {
                for await message in client.messages {
                    if message.topic == Topics.dynsecResponse {
                        dynsec.deliver(message.payload)
                    } else if message.topic == MeterTopics.response {
                        meter?.deliver(message.payload)
                    } else if message.topic == MeterTopics.stats {
                        guard let stats = try? MeterTopics.parseStats(message.payload) else { continue }
                        // Denials since the last figures (counters restart with the broker).
                        let denied = traffic.withLock { old -> [String: UInt64] in
                            defer { old = stats }
                            var increases: [String: UInt64] = [:]
                            for (provider, now) in stats where now.denied > (old[provider]?.denied ?? 0) {
                                increases[provider] = now.denied - (old[provider]?.denied ?? 0)
                            }
                            return increases
                        }
                        if !denied.isEmpty { Task { await gateway.recordQuotaDenials(denied) } }
                    } else if Topics.requestTarget(of: message.topic) != nil
                        || FleetTopics.localRequestTarget(of: message.topic) != nil
                    {
                        requestSink.yield(message)
                    }
                }
                requestSink.finish()
            })
        tasks.append(
            Task {
                for await message in requests {
                    if let target = FleetTopics.localRequestTarget(of: message.topic) {
                        await Self.serveRemote(
                            message, target: target, authenticator: authenticator, gateway: gateway, limits: limits,
                            client: client, logger: logger)
                        continue
                    }
                    guard let target = Topics.requestTarget(of: message.topic) else { continue }
                    let (response, replyTo) = await gateway.handle(
                        payload: message.payload, target: target, limits: limits)
                    await Self.reply(
                        response, replyTo: replyTo, target: target, message: message, client: client, logger: logger)
                }
            })
        tasks.append(
            Task {
                for await event in client.events {
                    switch event {
                    case .connected(let sessionPresent):
                        logger.info("connected to the broker", ["sessionPresent": sessionPresent])
                        await Self.announce(client: client, gateway: gateway, logger: logger)
                    case .disconnected(let code):
                        logger.log(code == 0 ? .debug : .warning, "disconnected from the broker", ["reason": code])
                    case .connectionRefused(let reason):
                        logger.error("the broker refused the daemon's connection", ["reason": "\(reason)"])
                    }
                }
            })
        do {
            try await Self.subscribe(client, Topics.dynsecResponse)
            if meter != nil {
                try await Self.subscribe(client, MeterTopics.response)
                try await Self.subscribe(client, MeterTopics.stats)
            }
            try await Self.subscribe(client, Topics.allRequests)
            try await Self.subscribe(client, FleetTopics.allLocalRequests)
        } catch {
            for task in tasks { task.cancel() }
            await client.disconnect()
            await broker?.stop()
            throw error
        }
        await Self.announce(client: client, gateway: gateway, logger: logger)
        await gateway.startServices()
        await gateway.startSampler()
        running.withLock {
            $0 = Running(
                broker: broker, client: client, gateway: gateway, bundles: bundles, tasks: tasks, lock: lock,
                port: port)
        }
        do {
            try AtomicFile.write(
                try JSONCoding.encoder.encode(operatorCredentials), to: directory.operatorCredentials, mode: 0o600)
        } catch {
            logger.error(
                "cannot write the operator's credentials: vgw will not find this daemon", ["error": "\(error)"])
        }
        logger.info(
            "gateway ready",
            [
                "home": configuration.homeID, "broker": "\(host):\(port)", "data": directory.path,
                "mode": external == nil ? "embedded" : "external",
            ])
    }

    /// Drains: stops taking requests, says so on the status topic, disconnects, stops the broker.
    public func stop() async {
        guard
            let state = running.withLock({ value -> Running? in
                defer { value = nil }
                return value
            })
        else { return }
        await state.gateway.stopSampler()
        // Services first, while the broker still runs: their identities are revoked cleanly.
        await state.bundles.shutdown()
        _ = try? await state.client.publish(
            topic: Topics.gatewayStatus, payload: Array(#"{"state":"stopped"}"#.utf8), qos: .atLeastOnce, retain: true)
        await state.client.disconnect()
        for task in state.tasks { task.cancel() }
        await state.broker?.stop()
        state.lock.release()
        logger.info("gateway stopped")
    }

    // MARK: Start-up pieces

    /// Services run as other uids and must traverse every directory above their files;
    /// a private ancestor (a `mkdtemp` directory, a 0700 home) makes every start fail with
    /// "Permission denied". Said once, at start, instead of in every crash loop.
    private func checkServicesCanReachTheirFiles() {
        guard getuid() == 0 else { return }
        var path = URL(fileURLWithPath: directory.path).standardizedFileURL.deletingLastPathComponent().path
        while path != "/" && !path.isEmpty {
            var info = stat()
            if stat(path, &info) == 0, info.st_mode & 0o001 == 0 {
                logger.error(
                    "services will not start: \(path) is not searchable by other users (chmod o+x, or move --data-dir)")
                return
            }
            path = (path as NSString).deletingLastPathComponent
        }
    }

    /// Runs still open in the store were opened by a daemon that died without closing them
    /// (a clean stop closes them). When that daemon died is unknown; the last time known is
    /// taken as this daemon's start, which may count the downtime as running time. Simple
    /// and an upper bound; a heartbeat would be more precise, and is not worth it yet.
    static func closeRunsLeftOpen(_ store: Store) {
        do {
            let closed = try store.closeOpenRuns(at: Date(), exit: "daemon restarted")
            if closed > 0 {
                Logger("gateway").warning("closed the runs of services left open by the last daemon", ["runs": closed])
            }
        } catch {
            Logger("gateway").error("cannot close the runs left open by the last daemon", ["error": "\(error)"])
        }
    }

    /// Brings an external broker in line with the store, over a short-lived connection of
    /// the operator-supplied admin client; the daemon then serves as `core.vgwd`, created
    /// here with this run's password (the admin's own roles are never touched, so it is
    /// never kicked mid-batch).
    private func reconcile(
        _ external: GatewayConfiguration.ExternalBroker, state: AccessState, passwords: [String: String]
    ) async throws {
        let admin = try await MQTTClient.connected(
            MQTTConfiguration(
                host: external.host, port: Int(external.port), clientID: "core.reconciler",
                username: external.adminUsername, password: external.adminPassword, reconnect: false))
        let dynsec = DynSecClient { payload in
            try await admin.publish(topic: Topics.dynsecControl, payload: payload, qos: .atLeastOnce)
        }
        let reader = Task {
            for await message in admin.messages where message.topic == Topics.dynsecResponse {
                dynsec.deliver(message.payload)
            }
        }
        defer { reader.cancel() }
        do {
            try await Self.subscribe(admin, Topics.dynsecResponse)
            let report = try await ExternalReconciler.reconcile(state: state, passwords: passwords, dynsec: dynsec)
            logger.info(
                "reconciled the external broker from the store",
                ["providers": state.providers.count, "removed": report.removedStale.joined(separator: ",")])
            if !report.missingClients.isEmpty {
                logger.error(
                    "clients missing from the external broker: re-issue them with client.remove and client.add",
                    ["clients": report.missingClients.joined(separator: ",")])
            }
        } catch {
            await admin.disconnect()
            throw error
        }
        await admin.disconnect()
    }

    private func choosePort() throws -> UInt16 {
        if Ports.isFree(host: configuration.host, port: configuration.port) { return configuration.port }
        guard configuration.portFallback else {
            throw VGWError(
                .config, "port \(configuration.port) on \(configuration.host) is in use; choose another with --port")
        }
        let port = try Ports.freePort(host: configuration.host)
        logger.warning(
            "port \(configuration.port) on \(configuration.host) is in use (another MQTT broker?); listening on \(port) instead. vgw finds it through the data directory; other clients must use port \(port)."
        )
        return port
    }

    /// The operator's identity persists across restarts: its hash in the store, its
    /// password in `operator.json` (0600) for `vgw`. Either missing: a fresh pair.
    /// `operator.json` is the daemon's "ready" sign: written last in `start`.
    private func ensureOperator(store: Store, host: String, port: UInt16) throws -> (
        hash: PasswordHash, credentials: OperatorCredentials
    ) {
        let path = directory.operatorCredentials
        let existing = try? OperatorCredentials.load(from: path)
        let storedHash = try store.setting("operator.password").flatMap {
            try? JSONCoding.decoder.decode(PasswordHash.self, from: Data($0.utf8))
        }
        var credentials: OperatorCredentials
        let hash: PasswordHash
        if let existing, let storedHash, existing.username == Self.operatorUsername,
            storedHash.verify(existing.password)
        {
            credentials = existing
            hash = storedHash
        } else {
            let password = try SecureRandom.token()
            hash = try PasswordHash.make(password: password)
            try store.setSetting(
                "operator.password", String(decoding: try JSONCoding.encoder.encode(hash), as: UTF8.self))
            credentials = OperatorCredentials(
                host: host, port: port, username: Self.operatorUsername, password: password,
                home: configuration.homeID)
            logger.info("issued new operator credentials", ["file": path])
        }
        credentials.host = Self.connectable(host)
        credentials.port = port
        credentials.home = configuration.homeID
        // Written again once the daemon serves (see `start`): until then `vgw` must not
        // find a file that promises a daemon which is not listening yet.
        unlink(path)
        return (hash, credentials)
    }

    /// A wildcard listening address is reached through loopback.
    static func connectable(_ host: String) -> String {
        host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
    }

    private static func subscribe(_ client: MQTTClient, _ filter: String) async throws {
        let code = try await client.subscribe(filter, qos: .atLeastOnce)
        guard !MQTTClient.isRefusal(code) else {
            throw VGWError(.broker, "the broker refused the daemon's subscription to \(filter) (reason \(code))")
        }
    }

    static func accessState(store: Store, daemon: CoreIdentity, operator: CoreIdentity) throws -> AccessState {
        let providers = try store.providers().compactMap { record -> AccessState.Provider? in
            guard let id = ProviderID(rawValue: record.id) else { return nil }
            return AccessState.Provider(id: id, running: record.state == .running)
        }
        let clients = try store.clients(provider: nil).compactMap { record -> AccessState.Client? in
            guard let provider = ProviderID(rawValue: record.provider), let name = ClientName(rawValue: record.name)
            else { return nil }
            let hash = record.passwordHash
            return AccessState.Client(
                identity: ClientIdentity(provider: provider, name: name),
                password: PasswordHash(hash: hash.hash, salt: hash.salt, iterations: hash.iterations))
        }
        return AccessState(
            providers: providers, clients: clients, grants: try store.grants(), daemon: daemon, operators: [`operator`])
    }

    private static func announce(client: MQTTClient, gateway: CoreGateway, logger: Logger) async {
        do {
            try await client.publish(
                topic: Topics.gatewayStatus, payload: Array(#"{"state":"running"}"#.utf8), qos: .atLeastOnce,
                retain: true)
        } catch {
            logger.warning("cannot publish the gateway status", ["error": "\(error)"])
        }
        await gateway.publishAllStatus()
        await gateway.pushQuotas()
    }

    /// A request that came through the cloud: it must carry a valid signature for this home
    /// and this endpoint, once; then it is served like a local one, and answered on
    /// `remote/mgmt/<target>/res/<replyTo>` (bridged out to the cloud).
    private static func serveRemote(
        _ message: MQTTMessage, target: String, authenticator: RequestAuthenticator, gateway: CoreGateway,
        limits: RequestLimits, client: MQTTClient, logger: Logger
    ) async {
        let response: Response
        var replyTo: String?
        var cached: [UInt8]?
        do {
            let (inner, nonce) = try authenticator.verify(message.payload, target: target)
            let handled = await gateway.handle(payload: inner, target: target, limits: limits, remote: true)
            response = handled.0
            replyTo = handled.replyTo
            if let bytes = try? response.encoded() { try? authenticator.store.storeResponse(bytes, forNonce: nonce) }
        } catch {
            let error = VGWError.wrap(error, .internalError, "cannot verify the request")
            logger.warning("refused a remote request", ["target": target, "code": error.code, "error": error.message])
            // The reply level and id are read from the envelope's request even though it is
            // refused: a reply level is one topic level of this endpoint, nothing more.
            let inner = (try? JSONCoding.decoder.decode(SignedRequest.self, from: Data(message.payload)))
                .flatMap { Base64.decode($0.request) }
                .flatMap { try? JSONCoding.decoder.decode(JSONValue.self, from: Data($0)) }
            replyTo = inner?["replyTo"]?.stringValue.flatMap { Request.isValidReplyTo($0) ? $0 : nil }
            let id = inner?["id"]?.stringValue
            response = Response.failure(id: id, error: error, home: authenticator.homeID)
            // A duplicate (a sender's retry after a lost answer, or a replay) is refused, and
            // the answer to the original, which ran once, is sent again.
            if error.code == RequestAuthenticator.replayed,
                let envelope = try? JSONCoding.decoder.decode(SignedRequest.self, from: Data(message.payload))
            {
                cached = try? authenticator.store.cachedResponse(forNonce: RequestAuthenticator.nonceKey(envelope.auth))
            }
        }
        let topic = FleetTopics.localResponse(provider: target, replyTo: replyTo ?? "_errors")
        do {
            try await client.publish(topic: topic, payload: try response.encoded(), qos: .atMostOnce)
            if let cached { try await client.publish(topic: topic, payload: cached, qos: .atMostOnce) }
        } catch {
            logger.warning("cannot publish a remote response", ["topic": topic, "error": "\(error)"])
        }
    }

    /// Answers on `mgmt/<target>/res/<replyTo>`; a request too broken to name its reply
    /// level is answered on its MQTT 5 response topic when it is one of ours, else on
    /// `mgmt/<target>/res/_errors`.
    private static func reply(
        _ response: Response, replyTo: String?, target: String, message: MQTTMessage, client: MQTTClient, logger: Logger
    ) async {
        let prefix = "mgmt/\(target)/res/"
        let topic: String
        if let replyTo {
            topic = prefix + replyTo
        } else if let responseTopic = message.responseTopic, responseTopic.hasPrefix(prefix),
            Request.isValidReplyTo(String(responseTopic.dropFirst(prefix.count)))
        {
            topic = responseTopic
        } else {
            topic = prefix + "_errors"
        }
        do {
            try await client.publish(
                topic: topic, payload: try response.encoded(), qos: .atLeastOnce,
                correlationData: message.correlationData)
        } catch {
            logger.warning("cannot publish a response", ["topic": topic, "error": "\(error)"])
        }
    }
}

/// An exclusive lock on the data directory (`flock` on the pid file), so two daemons can
/// never manage the same store and broker files.
final class DirectoryLock: Sendable {
    private let fd: Int32

    init(path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VGWError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let other = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines)
            close(fd)
            throw VGWError(
                .conflict, "another vgwd (pid \(other ?? "unknown")) already uses this data directory")
        }
        ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        self.fd = fd
    }

    func release() {
        flock(fd, LOCK_UN)
    }

    deinit {
        close(fd)
    }
}
