import Broker
import BundleFormat
import Crypto
import Foundation
import Protocol
import ResourceControl
import Services
import Store
import Supervisor
import Support
import Synchronization

/// Installs, runs and removes providers' bundles: files on disk, a broker identity per
/// running service, cgroups, the supervised process, the retained status.
///
/// Layout, under `<data>/bundles` (0711: traversable, not listable):
/// `<p>/` (0700, owned by the provider's uid), `<p>/<name>/app` (the extracted archive,
/// root-owned, read-only to the service), `<p>/<name>/state` (the service's own, writable),
/// `<p>/<name>/logs` (root-owned; the daemon opens them for the child).
public final class BundleManager: Sendable {
    public struct Settings: Sendable {
        public var root: String
        public var brokerHost: String
        public var brokerPort: UInt16
        public var maxArchiveBytes: Int = 16 << 20
        /// Default limits of a whole VGW (every bundle of a provider together).
        public var providerLimits = ResourceLimits(memoryBytes: 512 << 20, cpu: 1.0, pids: 256)
        /// Run services as per-provider uids from this base (only when vgwd is root).
        public var uidBase: uid_t = 200_000
        public var tuning = ServiceSupervisor.Tuning()
        public init(root: String, brokerHost: String, brokerPort: UInt16) {
            self.root = root
            self.brokerHost = brokerHost
            self.brokerPort = brokerPort
        }
    }

    public let settings: Settings
    public let resources: ResourceController?
    private let store: Store
    private let dynsec: DynSecClient
    private let publish: Publish
    private let supervisor: ServiceSupervisor
    /// Usage of each running service's group when it started, to tell an OOM kill.
    private let baselines = Mutex<[ServiceID: ResourceUsage]>([:])
    /// When `shutdown` stopped every service; status changes still queued for the hook at
    /// that time describe services that are gone (see `recordServiceRun`).
    private let shutDownAt = Mutex<Date?>(nil)
    private let logger = Logger("bundles")

    public init(settings: Settings, store: Store, dynsec: DynSecClient, publish: @escaping Publish) throws {
        self.settings = settings
        self.store = store
        self.dynsec = dynsec
        self.publish = publish
        let logger = self.logger
        do {
            // One cgroup subtree per data directory: a restarted daemon finds (and clears)
            // its own, and two daemons on one machine never touch each other's.
            let root = "vgw-" + String(Digest.sha256Hex(Array(settings.root.utf8)).prefix(12))
            let controller = try ResourceController(rootName: root, choice: .auto)
            try? controller.removeAll()
            resources = controller
        } catch {
            logger.warning("no resource control available; services run without limits", ["error": "\(error)"])
            resources = nil
        }
        let box = HookBox()
        supervisor = ServiceSupervisor(
            hooks: ServiceSupervisor.Hooks(
                prepare: { spec in try await box.manager?.prepare(spec) ?? Launch() },
                explain: { id, exit in box.manager?.explain(id, exit) },
                finished: { id in await box.manager?.finished(id) },
                changed: { status in await box.manager?.publishStatus(status) }),
            tuning: settings.tuning)
        box.manager = self
        try FileManager.default.createDirectory(atPath: settings.root, withIntermediateDirectories: true)
        chmod(settings.root, 0o711)
    }

    /// Which mechanism limits the services, for `vgw.show`.
    public var mechanism: String { resources?.mechanism.description ?? "none (no writable cgroup, no rlimits)" }

    // MARK: Operations

    public struct InstallResult: Codable, Sendable {
        public var provider: String
        public var name: String
        public var version: String
        public var replaced: Bool
        public var state: String
    }

    /// Installs (or replaces) a bundle from its archive; nothing is left behind on failure.
    public func install(provider: ProviderID, archive: [UInt8], start: Bool, vgwRunning: Bool) async throws
        -> InstallResult
    {
        guard archive.count <= settings.maxArchiveBytes else {
            throw VGWError(
                .tooLarge, "bundle archive is \(archive.count) bytes, over the limit of \(settings.maxArchiveBytes)")
        }
        let providerDirectory = try ensureProviderDirectory(provider)
        let incoming = providerDirectory + "/.incoming-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: incoming) }
        let limits = ExtractionLimits(maxCompressedBytes: settings.maxArchiveBytes)
        let manifest = try BundleArchive.extract(archive: archive, into: incoming, limits: limits)
        let id = ServiceID(provider: provider.rawValue, bundle: manifest.name)
        let existing = try store.bundle(provider: provider.rawValue, name: manifest.name)
        await supervisor.stop(id)
        let bundleDirectory = providerDirectory + "/" + manifest.name
        try FileManager.default.createDirectory(atPath: bundleDirectory + "/state", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: bundleDirectory + "/logs", withIntermediateDirectories: true)
        chmod(bundleDirectory, 0o755)
        if let uid = uid(for: provider) { chown(bundleDirectory + "/state", uid, uid) }
        let app = bundleDirectory + "/app"
        let old = bundleDirectory + "/.old-\(UUID().uuidString)"
        if FileManager.default.fileExists(atPath: app) { try FileManager.default.moveItem(atPath: app, toPath: old) }
        try FileManager.default.moveItem(atPath: incoming, toPath: app)
        // Readable and runnable by the service; only the daemon may change it.
        chmod(app, 0o755)
        try? FileManager.default.removeItem(atPath: old)
        let record = BundleRecord(
            provider: provider.rawValue, name: manifest.name, version: manifest.version,
            manifest: String(decoding: try JSONCoding.encoder.encode(manifest), as: UTF8.self),
            archiveSHA256: Digest.sha256Hex(archive), desired: start ? .running : .stopped, installedAt: Date())
        try store.putBundle(record)
        var state = "stopped"
        if start && vgwRunning {
            await supervisor.start(try spec(for: record))
            state = await supervisor.status(id)?.state.rawValue ?? "starting"
        } else {
            await publishStatus(stoppedStatus(id))
        }
        logger.info("bundle installed", ["bundle": "\(id)", "version": manifest.version, "replaced": existing != nil])
        return InstallResult(
            provider: provider.rawValue, name: manifest.name, version: manifest.version, replaced: existing != nil,
            state: state)
    }

    public func uninstall(provider: ProviderID, name: String) async throws {
        _ = try existing(provider, name)
        let id = ServiceID(provider: provider.rawValue, bundle: name)
        await supervisor.stop(id)
        try store.deleteBundle(provider: provider.rawValue, name: name)
        try? FileManager.default.removeItem(atPath: directory(provider, name))
        try? resources?.removeGroup(path: [provider.rawValue, name])
        try? await publish(Self.statusTopic(id), [], true)
        logger.info("bundle uninstalled", ["bundle": "\(id)"])
    }

    public func start(provider: ProviderID, name: String, vgwRunning: Bool) async throws -> ServiceStatus {
        let record = try existing(provider, name)
        try store.setBundleDesired(provider: provider.rawValue, name: name, .running)
        let id = ServiceID(provider: provider.rawValue, bundle: name)
        guard vgwRunning else { return stoppedStatus(id) }
        await supervisor.start(try spec(for: record))
        return await supervisor.status(id) ?? stoppedStatus(id)
    }

    public func stop(provider: ProviderID, name: String) async throws -> ServiceStatus {
        _ = try existing(provider, name)
        try store.setBundleDesired(provider: provider.rawValue, name: name, .stopped)
        let id = ServiceID(provider: provider.rawValue, bundle: name)
        await supervisor.stop(id)
        let status = stoppedStatus(id)
        await publishStatus(status)
        return status
    }

    public struct BundleView: Codable, Sendable {
        public var name: String
        public var version: String
        public var desired: String
        public var state: String
        public var pid: Int32?
        public var restarts: Int
        public var lastExit: String?
        public var installedAt: Date
    }

    public func list(provider: ProviderID) async throws -> [BundleView] {
        var views: [BundleView] = []
        for record in try store.bundles(provider: provider.rawValue) {
            let status = await supervisor.status(ServiceID(provider: record.provider, bundle: record.name))
            views.append(
                BundleView(
                    name: record.name, version: record.version, desired: record.desired.rawValue,
                    state: status?.state.rawValue ?? "stopped", pid: status?.pid, restarts: status?.restarts ?? 0,
                    lastExit: status?.lastExit, installedAt: record.installedAt))
        }
        return views
    }

    public func isAlive(provider: ProviderID, name: String) async throws -> Bool {
        _ = try existing(provider, name)
        return await supervisor.status(ServiceID(provider: provider.rawValue, bundle: name))?.state == .running
    }

    public func logs(provider: ProviderID, name: String, lines: Int) async throws -> (stdout: String, stderr: String) {
        _ = try existing(provider, name)
        return await supervisor.logs(
            ServiceID(provider: provider.rawValue, bundle: name), logDirectory: directory(provider, name) + "/logs",
            lines: lines)
    }

    /// Starts every bundle meant to run of a running VGW (VGW start, daemon start).
    public func startDesired(provider: ProviderID) async {
        do {
            for record in try store.bundles(provider: provider.rawValue) where record.desired == .running {
                await supervisor.start(try spec(for: record))
            }
        } catch {
            logger.error("cannot start the bundles of \(provider)", ["error": "\(error)"])
        }
    }

    /// Stops every service of a VGW (VGW stop); what is meant to run stays recorded.
    public func stopAll(provider: ProviderID) async {
        await supervisor.stopAll(provider: provider.rawValue)
    }

    /// Removes everything of a provider that is being deleted.
    public func removeAll(provider: ProviderID) async {
        await supervisor.stopAll(provider: provider.rawValue)
        try? FileManager.default.removeItem(atPath: settings.root + "/" + provider.rawValue)
        try? resources?.removeGroup(path: [provider.rawValue])
        for record in (try? store.bundles(provider: provider.rawValue)) ?? [] {
            try? await publish(Self.statusTopic(ServiceID(provider: record.provider, bundle: record.name)), [], true)
        }
    }

    /// Daemon shutdown: every service stopped, every group removed.
    public func shutdown() async {
        await supervisor.shutdown()
        try? resources?.removeAll()
        // The supervisor's last status changes may still be queued for the hook when the
        // daemon exits: close the runs here, at the real end, rather than at the next start.
        let now = Date()
        shutDownAt.withLock { $0 = now }
        do {
            try store.closeOpenRuns(at: now, exit: Self.shutdownExit)
        } catch {
            logger.warning("cannot close the services' runs", ["error": "\(error)"])
        }
    }

    public func resourceUsage(provider: ProviderID, name: String? = nil) -> ResourceUsage? {
        guard let resources, let group = resources.group(path: [provider.rawValue] + (name.map { [$0] } ?? [])) else {
            return nil
        }
        return resources.usage(of: group)
    }

    // MARK: Hooks

    /// Before every start: a fresh broker identity and password, the cgroups to join.
    fileprivate func prepare(_ spec: ServiceSpec) async throws -> Launch {
        guard let provider = ProviderID(rawValue: spec.id.provider) else {
            throw VGWError(.internalError, "bad provider id \(spec.id.provider)")
        }
        let identity = ClientIdentity(provider: provider, name: try Self.identityName(spec.id.bundle))
        let password = try SecureRandom.token()
        let hash = try PasswordHash.make(password: password)
        try await dynsec.execute(DynSecCommands.createClient(identity, password: password, enabled: true))
        try store.replaceClient(
            ClientRecord(
                provider: provider.rawValue, name: identity.name.rawValue, username: identity.username,
                clientID: identity.clientID,
                passwordHash: StoredPassword(hash: hash.hash, salt: hash.salt, iterations: hash.iterations),
                kind: "bundle", createdAt: Date()))
        var launch = Launch(
            environment: [
                "VGW_MQTT_USERNAME": identity.username, "VGW_MQTT_PASSWORD": password,
                "VGW_MQTT_CLIENT_ID": identity.clientID,
            ])
        if let resources, let record = try store.bundle(provider: provider.rawValue, name: spec.id.bundle) {
            let manifest = try BundleManifest.decode(Array(record.manifest.utf8))
            _ = try resources.ensureGroup(path: [provider.rawValue], limits: settings.providerLimits)
            let group = try resources.ensureGroup(
                path: [provider.rawValue, spec.id.bundle],
                limits: ResourceLimits(
                    memoryBytes: UInt64(manifest.resources.memory), cpu: manifest.resources.cpu,
                    pids: manifest.resources.pids))
            launch.cgroupProcs = group.procsFiles
            launch.limits = group.spawnLimits
            let usage = resources.usage(of: group)
            baselines.withLock { $0[spec.id] = usage }
        }
        return launch
    }

    fileprivate func explain(_ id: ServiceID, _ exit: ExitStatus) -> String? {
        guard let resources, let group = resources.group(path: [id.provider, id.bundle]),
            let before = baselines.withLock({ $0[id] }),
            let exceeded = resources.memoryLimitExceeded(in: group, since: before), exit == .signaled(SIGKILL)
        else { return nil }
        return exceeded.description(for: group.path)
    }

    /// After a service stopped for good: whatever it left running in its cgroup (children
    /// that left its process group) is killed, and its credentials die with it.
    fileprivate func finished(_ id: ServiceID) async {
        do {
            try resources?.removeGroup(path: [id.provider, id.bundle])
        } catch {
            logger.warning("cannot remove the service's cgroup", ["bundle": "\(id)", "error": "\(error)"])
        }
        guard let provider = ProviderID(rawValue: id.provider), let name = try? Self.identityName(id.bundle) else {
            return
        }
        let identity = ClientIdentity(provider: provider, name: name)
        try? await dynsec.execute([
            DynSecCommand("deleteClient", ["username": .string(identity.username)], tolerateFailure: true)
        ])
        _ = try? store.removeClient(provider: provider.rawValue, name: name.rawValue)
    }

    fileprivate func publishStatus(_ status: ServiceStatus) async {
        recordServiceRun(status)
        let id = ServiceID(provider: status.provider, bundle: status.bundle)
        do {
            try await publish(Self.statusTopic(id), Array(try JSONCoding.encoder.encode(status)), true)
        } catch {
            logger.warning("cannot publish bundle status", ["bundle": "\(id)", "error": "\(error)"])
        }
    }

    /// Accounting of service usage time: every status change passes here, in order. Going
    /// to `running` opens a run; any other state (stopped, exited, backoff, crash-loop) closes
    /// the open one, if any, with the state and the exit that ended it. `starting` never
    /// follows `running` directly, so it never closes a run by mistake.
    private func recordServiceRun(_ status: ServiceStatus) {
        do {
            if status.state == .running {
                try store.openRun(provider: status.provider, bundle: status.bundle, at: status.since)
                if let end = shutDownAt.withLock({ $0 }) {
                    // Delivered after the shutdown stopped the service: the run ended then.
                    try store.closeRun(
                        provider: status.provider, bundle: status.bundle, at: end, exit: Self.shutdownExit)
                }
            } else if status.state != .starting {
                let exit = status.lastExit.map { "\(status.state.rawValue): \($0)" } ?? status.state.rawValue
                try store.closeRun(provider: status.provider, bundle: status.bundle, at: status.since, exit: exit)
                for kind in Self.accountingEvents(for: status) {
                    _ = try store.addEvent(
                        provider: status.provider, bundle: status.bundle, kind: kind,
                        detail: ["exit": .string(status.lastExit ?? "")], at: status.since)
                }
            }
        } catch {
            // A deleted provider's late status lands here (its runs went with it).
            logger.warning(
                "cannot record the service's usage time",
                ["bundle": "\(status.provider)/\(status.bundle)", "error": "\(error)"])
        }
    }

    static let shutdownExit = "stopped: daemon shutdown"

    /// The events a run's end is worth to the provider's accounting: a kill at the memory
    /// limit, a crash loop. Each failed run ends in exactly one of backoff, exited or
    /// crash-loop, so each is recorded once.
    static func accountingEvents(for status: ServiceStatus) -> [String] {
        guard [.backoff, .exited, .crashLoop].contains(status.state) else { return [] }
        var kinds: [String] = []
        if status.lastExit?.contains("memory limit") == true { kinds.append("service.memory-exceeded") }
        if status.state == .crashLoop { kinds.append("service.crash-loop") }
        return kinds
    }

    /// The supervisor's view of one service (nil when it is not supervised), for `perf.get`.
    public func serviceStatus(provider: ProviderID, name: String) async -> ServiceStatus? {
        await supervisor.status(ServiceID(provider: provider.rawValue, bundle: name))
    }

    // MARK: Helpers

    /// A running bundle's broker identity: `<p>.bundle-<name>`; `bundle-` names are
    /// reserved for this (client.add refuses them).
    static func identityName(_ bundle: String) throws -> ClientName {
        try ClientName("bundle-\(bundle)")
    }

    public static func statusTopic(_ id: ServiceID) -> String { "status/\(id.provider)/bundles/\(id.bundle)" }

    private func stoppedStatus(_ id: ServiceID) -> ServiceStatus {
        ServiceStatus(
            provider: id.provider, bundle: id.bundle, state: .stopped, pid: nil, restarts: 0, lastExit: nil,
            since: Date())
    }

    private func existing(_ provider: ProviderID, _ name: String) throws -> BundleRecord {
        guard let record = try store.bundle(provider: provider.rawValue, name: name) else {
            throw VGWError(.notFound, "no bundle \(name) in \(provider)")
        }
        return record
    }

    private func directory(_ provider: ProviderID, _ name: String) -> String {
        settings.root + "/" + provider.rawValue + "/" + name
    }

    /// `<root>/<p>`: root-owned, so a service can never swap an entry for a symlink the
    /// daemon would follow; group = the provider's gid with search permission only, so
    /// the provider's services reach their files and no other provider's can.
    private func ensureProviderDirectory(_ provider: ProviderID) throws -> String {
        let path = settings.root + "/" + provider.rawValue
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o700)
        if let uid = uid(for: provider) {
            chown(path, 0, gid_t(uid))
            chmod(path, 0o710)
        }
        return path
    }

    /// The uid a provider's services run as when vgwd is root: allocated once, stored.
    private func uid(for provider: ProviderID) -> uid_t? {
        guard getuid() == 0 else { return nil }
        let key = "uid." + provider.rawValue
        if let stored = try? store.setting(key), let uid = uid_t(stored) { return uid }
        let used = Set(
            ((try? store.providers()) ?? []).compactMap { try? store.setting("uid." + $0.id) }.compactMap { uid_t($0) })
        var uid = settings.uidBase
        while used.contains(uid) { uid += 1 }
        try? store.setSetting(key, String(uid))
        return uid
    }

    private func spec(for record: BundleRecord) throws -> ServiceSpec {
        let manifest = try BundleManifest.decode(Array(record.manifest.utf8))
        guard let provider = ProviderID(rawValue: record.provider) else {
            throw VGWError(.internalError, "bad provider id \(record.provider)")
        }
        let base = directory(provider, record.name)
        let state = base + "/state"
        var environment = manifest.env
        environment.merge(
            [
                "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": state,
                "VGW_MQTT_HOST": settings.brokerHost, "VGW_MQTT_PORT": String(settings.brokerPort),
                "VGW_TOPIC_PREFIX": Topics.namespace(provider) + "/", "VGW_PROVIDER": provider.rawValue,
                "VGW_BUNDLE": record.name, "VGW_BUNDLE_VERSION": record.version, "VGW_STATE_DIR": state,
            ]
        ) { _, ours in ours }
        let credentials = uid(for: provider).map { (uid: $0, gid: gid_t($0)) }
        return ServiceSpec(
            id: ServiceID(provider: record.provider, bundle: record.name),
            executable: base + "/app/" + manifest.command,
            arguments: manifest.args, environment: environment, workingDirectory: base + "/app",
            logDirectory: base + "/logs", restart: RestartPolicy(rawValue: manifest.restart.rawValue) ?? .onFailure,
            credentials: credentials)
    }
}

/// Lets the supervisor's hooks reach the manager that owns the supervisor (set once, right
/// after both exist; weak, so the pair does not keep itself alive).
private final class HookBox: Sendable {
    private let reference = Mutex<WeakManager>(WeakManager())
    var manager: BundleManager? {
        get { reference.withLock { $0.value } }
        set { reference.withLock { $0.value = newValue } }
    }
}

private struct WeakManager: @unchecked Sendable {
    // Only read and written under HookBox's mutex.
    weak var value: BundleManager?
}
