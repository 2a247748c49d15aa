import Foundation
import Supervisor
import Support

/// Names one service: a provider's bundle.
public struct ServiceID: Hashable, Sendable, Codable, CustomStringConvertible {
    public var provider: String
    public var bundle: String
    public init(provider: String, bundle: String) {
        self.provider = provider
        self.bundle = bundle
    }
    public var description: String { "\(provider)/\(bundle)" }
}

/// When a service that ended is started again.
public enum RestartPolicy: String, Sendable, Codable {
    case always
    case onFailure = "on-failure"
    case never
}

/// What runs: fixed for the life of an installation.
public struct ServiceSpec: Sendable {
    public var id: ServiceID
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String
    /// Where `stdout.log` and `stderr.log` go.
    public var logDirectory: String
    public var restart: RestartPolicy
    public var credentials: (uid: uid_t, gid: gid_t)?

    public init(
        id: ServiceID, executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String, logDirectory: String, restart: RestartPolicy,
        credentials: (uid: uid_t, gid: gid_t)? = nil
    ) {
        self.id = id
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.logDirectory = logDirectory
        self.restart = restart
        self.credentials = credentials
    }
}

/// What changes at every start: fresh broker credentials, the cgroups to join, rlimits.
public struct Launch: Sendable {
    public var environment: [String: String]
    public var cgroupProcs: [String]
    public var limits: [ResourceLimit]
    public init(environment: [String: String] = [:], cgroupProcs: [String] = [], limits: [ResourceLimit] = []) {
        self.environment = environment
        self.cgroupProcs = cgroupProcs
        self.limits = limits
    }
}

public enum ServiceState: String, Sendable, Codable {
    /// Being spawned.
    case starting
    case running
    /// Ended; waiting out the backoff before the next start.
    case backoff
    /// Stopped by request (or never started).
    case stopped
    /// Ended and, by its restart policy, not restarted.
    case exited
    /// Crashed too often in a row; no longer restarted until started again.
    case crashLoop = "crash-loop"
}

/// A service's observable state, published retained on `status/<p>/bundles/<name>`.
public struct ServiceStatus: Sendable, Codable, Equatable {
    public var provider: String
    public var bundle: String
    public var state: ServiceState
    public var pid: Int32?
    public var restarts: Int
    /// "exit code 1", "killed by SIGKILL: memory limit exceeded", "cannot start ...".
    public var lastExit: String?
    public var since: Date

    public init(
        provider: String, bundle: String, state: ServiceState, pid: Int32?, restarts: Int, lastExit: String?,
        since: Date
    ) {
        self.provider = provider
        self.bundle = bundle
        self.state = state
        self.pid = pid
        self.restarts = restarts
        self.lastExit = lastExit
        self.since = since
    }
}

/// Runs services as supervised processes: spawns them with the spec, watches them,
/// restarts them by their policy with exponential backoff, detects crash loops, and keeps
/// their logs bounded. One task per service; all state in this actor.
public actor ServiceSupervisor {
    /// How the owner takes part in every start and end of a service.
    public struct Hooks: Sendable {
        /// Before every start: credentials, cgroups, limits. A throw counts as a failed start.
        public var prepare: @Sendable (ServiceSpec) async throws -> Launch
        /// After every end: a better reason than the wait status (the OOM killer), if known.
        public var explain: @Sendable (ServiceID, ExitStatus) -> String?
        /// After the service stopped for good (stop, exit, crash loop): revoke, clean up.
        public var finished: @Sendable (ServiceID) async -> Void
        /// Every change of status.
        public var changed: @Sendable (ServiceStatus) async -> Void

        public init(
            prepare: @escaping @Sendable (ServiceSpec) async throws -> Launch = { _ in Launch() },
            explain: @escaping @Sendable (ServiceID, ExitStatus) -> String? = { _, _ in nil },
            finished: @escaping @Sendable (ServiceID) async -> Void = { _ in },
            changed: @escaping @Sendable (ServiceStatus) async -> Void = { _ in }
        ) {
            self.prepare = prepare
            self.explain = explain
            self.finished = finished
            self.changed = changed
        }
    }

    /// Restart and log tuning; the defaults suit production, tests shorten them.
    public struct Tuning: Sendable {
        public var initialBackoff: Duration = .milliseconds(500)
        public var maximumBackoff: Duration = .seconds(30)
        /// A run at least this long counts as healthy and resets backoff and crash count.
        public var healthyRun: Duration = .seconds(10)
        /// This many short failed runs in a row make a crash loop.
        public var crashLoopThreshold = 5
        public var stopGrace: Duration = .seconds(5)
        /// Each log file is kept under this size (the older half moves to `.1`).
        public var maxLogBytes: Int = 1 << 20
        public init() {}
    }

    private struct Entry {
        var spec: ServiceSpec
        var status: ServiceStatus
        var child: ChildProcess?
        var task: Task<Void, Never>?
        var stopping = false
    }

    private var entries: [ServiceID: Entry] = [:]
    private let hooks: Hooks
    private let tuning: Tuning
    private let logger = Logger("services")
    private var logWatcher: Task<Void, Never>?

    /// Status changes, delivered to `hooks.changed` one at a time and in order (a
    /// retained "starting" must never overwrite the "running" that followed it).
    private let changes: AsyncStream<ServiceStatus>.Continuation
    private let publisher: Task<Void, Never>

    public init(hooks: Hooks, tuning: Tuning = Tuning()) {
        self.hooks = hooks
        self.tuning = tuning
        let (stream, continuation) = AsyncStream.makeStream(of: ServiceStatus.self)
        changes = continuation
        publisher = Task {
            for await status in stream { await hooks.changed(status) }
        }
    }

    deinit {
        changes.finish()
    }

    // MARK: Control

    /// Starts a service (restarting it if it runs). Returns once the first spawn was tried.
    public func start(_ spec: ServiceSpec) async {
        await stop(spec.id)
        try? FileManager.default.createDirectory(atPath: spec.logDirectory, withIntermediateDirectories: true)
        let status = ServiceStatus(
            provider: spec.id.provider, bundle: spec.id.bundle, state: .starting, pid: nil, restarts: 0,
            lastExit: nil, since: Date())
        entries[spec.id] = Entry(spec: spec, status: status)
        let (started, signal) = AsyncStream.makeStream(of: Void.self)
        entries[spec.id]?.task = Task { await self.run(spec.id, firstSpawn: signal) }
        for await _ in started { break }
        ensureLogWatcher()
    }

    /// Stops a service: SIGTERM to its process group, SIGKILL after the grace period.
    public func stop(_ id: ServiceID) async {
        guard var entry = entries[id] else { return }
        entry.stopping = true
        entries[id] = entry
        entry.task?.cancel()
        if let child = entry.child { await child.terminate(grace: tuning.stopGrace) }
        await entry.task?.value
        entries[id] = nil
    }

    /// Stops every service of a provider (or all, for `nil`), concurrently.
    public func stopAll(provider: String? = nil) async {
        let ids = entries.keys.filter { provider == nil || $0.provider == provider }
        await withTaskGroup(of: Void.self) { group in
            for id in ids { group.addTask { await self.stop(id) } }
        }
    }

    public func status(_ id: ServiceID) -> ServiceStatus? { entries[id]?.status }

    public func statuses(provider: String? = nil) -> [ServiceStatus] {
        entries.values.map(\.status).filter { provider == nil || $0.provider == provider }
            .sorted { ($0.provider, $0.bundle) < ($1.provider, $1.bundle) }
    }

    /// The pid of a running service (for usage figures).
    public func pid(_ id: ServiceID) -> pid_t? { entries[id]?.child?.pid }

    // MARK: The loop

    private func run(_ id: ServiceID, firstSpawn: AsyncStream<Void>.Continuation) async {
        var failures = 0
        var backoff = tuning.initialBackoff
        defer { firstSpawn.finish() }
        while let entry = entries[id], !entry.stopping, !Task.isCancelled {
            let spec = entry.spec
            update(id) { $0.state = .starting }
            let child: ChildProcess
            do {
                let launch = try await hooks.prepare(spec)
                child = try await ChildProcess.spawn(
                    SpawnRequest(
                        executable: spec.executable, arguments: spec.arguments,
                        environment: spec.environment.merging(launch.environment) { _, fresh in fresh },
                        workingDirectory: spec.workingDirectory,
                        stdout: .file(path: spec.logDirectory + "/stdout.log"),
                        stderr: .file(path: spec.logDirectory + "/stderr.log"), newProcessGroup: true,
                        parentDeathSignal: SIGKILL, limits: launch.limits, cgroupProcs: launch.cgroupProcs,
                        credentials: spec.credentials, noNewPrivileges: true))
            } catch {
                let reason = VGWError.wrap(error, .spawn, "cannot start").message
                logger.error("service could not start", ["service": "\(id)", "error": reason])
                firstSpawn.finish()
                failures += 1
                guard await afterFailure(id, reason: reason, failures: failures, backoff: &backoff) else { break }
                continue
            }
            let startedAt = ContinuousClock.now
            entries[id]?.child = child
            update(id) {
                $0.state = .running
                $0.pid = child.pid
            }
            logger.info("service started", ["service": "\(id)", "pid": child.pid])
            firstSpawn.finish()

            let exit = await child.wait()
            entries[id]?.child = nil
            let reason = hooks.explain(id, exit).map { "\(exit): \($0)" } ?? exit.description
            if entries[id]?.stopping ?? true {
                update(id) {
                    $0.state = .stopped
                    $0.pid = nil
                    $0.lastExit = reason
                }
                break
            }
            let healthy = ContinuousClock.now - startedAt >= tuning.healthyRun
            let failed = exit != .exited(0)
            logger.log(
                failed ? .warning : .info, "service ended", ["service": "\(id)", "exit": reason])
            if spec.restart == .never || (spec.restart == .onFailure && !failed) {
                update(id) {
                    $0.state = .exited
                    $0.pid = nil
                    $0.lastExit = reason
                }
                break
            }
            if healthy {
                failures = 0
                backoff = tuning.initialBackoff
            }
            failures += failed || !healthy ? 1 : 0
            guard await afterFailure(id, reason: reason, failures: failures, backoff: &backoff) else { break }
        }
        await hooks.finished(id)
    }

    /// Records an ended run; waits out the backoff. False when the service must not run again.
    private func afterFailure(_ id: ServiceID, reason: String, failures: Int, backoff: inout Duration) async -> Bool {
        if failures >= tuning.crashLoopThreshold {
            logger.error(
                "service is crash-looping; not restarting it until it is started again",
                ["service": "\(id)", "failures": failures, "last": reason])
            update(id) {
                $0.state = .crashLoop
                $0.pid = nil
                $0.lastExit = reason
            }
            return false
        }
        update(id) {
            $0.state = .backoff
            $0.pid = nil
            $0.lastExit = reason
            $0.restarts += 1
        }
        do {
            try await Task.sleep(for: backoff)
        } catch {
            return false
        }
        backoff = min(backoff * 2, tuning.maximumBackoff)
        return true
    }

    private func update(_ id: ServiceID, _ change: (inout ServiceStatus) -> Void) {
        guard var status = entries[id]?.status else { return }
        change(&status)
        status.since = Date()
        entries[id]?.status = status
        changes.yield(status)
    }

    // MARK: Logs

    private func ensureLogWatcher() {
        guard logWatcher == nil else { return }
        logWatcher = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                await self?.trimLogs()
            }
        }
    }

    private func trimLogs() {
        for entry in entries.values {
            for name in ["stdout.log", "stderr.log"] {
                ServiceLogs.trim(entry.spec.logDirectory + "/" + name, maxBytes: tuning.maxLogBytes)
            }
        }
    }

    /// The last `lines` lines of a service's output.
    public func logs(_ id: ServiceID, logDirectory: String, lines: Int) -> (stdout: String, stderr: String) {
        (
            ServiceLogs.tail(logDirectory + "/stdout.log", lines: lines),
            ServiceLogs.tail(logDirectory + "/stderr.log", lines: lines)
        )
    }

    /// Stops everything and the log watcher (daemon shutdown).
    public func shutdown() async {
        await stopAll()
        logWatcher?.cancel()
        logWatcher = nil
    }
}
