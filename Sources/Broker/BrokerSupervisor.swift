import Foundation
import Supervisor
import Support

/// What happened to the supervised broker, for the daemon's status and for tests.
public enum BrokerEvent: Sendable, Equatable {
    /// A broker process accepts connections.
    case started(pid_t)
    /// The broker process ended without being asked to.
    case exited(ExitStatus)
    /// Restart number `attempt` (counted from the `start()` call) is under way.
    case restarting(attempt: Int)
}

/// Runs mosquitto as a child process and keeps it running: a broker that dies is restarted
/// at once, with exponential backoff only when it crash-loops.
public actor BrokerSupervisor {
    /// Called before every start and restart; the daemon regenerates the dynamic-security
    /// file there, so that the broker always starts from the database's view.
    public typealias Prepare = @Sendable () async throws -> Void

    public nonisolated let configuration: BrokerConfiguration
    public nonisolated let events: AsyncStream<BrokerEvent>
    private let eventSink: AsyncStream<BrokerEvent>.Continuation
    private let prepare: Prepare?
    private let logger: Logger
    private let startupTimeout: Duration

    private var current: ChildProcess?
    private var supervision: Task<Void, Never>?
    private var stopping = false

    /// More crashes than this within `crashWindow` count as a crash loop.
    static let crashLimit = 5
    static let crashWindow: Duration = .seconds(30)
    static let maximumBackoff: Duration = .seconds(30)

    public init(
        configuration: BrokerConfiguration, startupTimeout: Duration = .seconds(10), logger: Logger = Logger("broker"),
        prepare: Prepare? = nil
    ) {
        self.configuration = configuration
        self.startupTimeout = startupTimeout
        self.logger = logger
        self.prepare = prepare
        (events, eventSink) = AsyncStream.makeStream(of: BrokerEvent.self, bufferingPolicy: .bufferingNewest(100))
    }

    deinit {
        eventSink.finish()
    }

    /// The pid of the running broker, nil while it is down.
    public var pid: pid_t? { current?.pid }

    public var isRunning: Bool { current.map { $0.exitStatus == nil } ?? false }

    /// Starts the broker and returns once it accepts connections; then supervises it
    /// until `stop()`. Throws `VGWError(.broker)` with the tail of mosquitto's log when
    /// it does not come up.
    public func start() async throws {
        guard supervision == nil else { throw VGWError(.broker, "the broker is already started") }
        stopping = false
        let child = try await launch()
        supervision = Task { await self.supervise(child) }
    }

    /// Stops the broker (SIGTERM, SIGKILL after `grace`); no restart happens afterwards.
    public func stop(grace: Duration = .seconds(5)) async {
        stopping = true
        supervision?.cancel()
        if let current {
            let status = await current.terminate(grace: grace)
            logger.info("mosquitto stopped", ["pid": current.pid, "status": status])
        }
        await supervision?.value
        supervision = nil
        current = nil
    }

    /// Waits for each broker process to end, and restarts it unless stopping.
    private func supervise(_ first: ChildProcess) async {
        var child = first
        var crashes: [ContinuousClock.Instant] = []
        var attempt = 0
        while true {
            let status = await child.wait()
            guard !stopping else { return }
            current = nil
            eventSink.yield(.exited(status))
            logger.error("mosquitto exited unexpectedly", ["pid": child.pid, "status": status])
            while true {
                attempt += 1
                let now = ContinuousClock.now
                crashes = crashes.filter { now - $0 < Self.crashWindow } + [now]
                if crashes.count > Self.crashLimit {
                    let delay = Self.backoff(crashes: crashes.count)
                    logger.error(
                        "MOSQUITTO IS CRASH-LOOPING: backing off before restarting",
                        ["crashes": crashes.count, "window": Self.crashWindow, "delay": delay])
                    try? await Task.sleep(for: delay)
                }
                guard !stopping else { return }
                eventSink.yield(.restarting(attempt: attempt))
                logger.warning("restarting mosquitto", ["attempt": attempt])
                do {
                    child = try await launch()
                    break
                } catch {
                    guard !stopping else { return }
                    logger.error("mosquitto restart failed", ["attempt": attempt, "error": error])
                }
            }
        }
    }

    /// 1 s for the first crash over the limit, doubling up to `maximumBackoff`.
    static func backoff(crashes: Int) -> Duration {
        let exponent = min(crashes - crashLimit - 1, 5)
        return min(.seconds(1 << exponent), maximumBackoff)
    }

    /// Writes the configuration, runs `prepare`, spawns mosquitto and waits until it serves.
    private func launch() async throws -> ChildProcess {
        let config = configuration
        do {
            try FileManager.default.createDirectory(
                atPath: config.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            try config.render().write(toFile: config.configurationFile, atomically: true, encoding: .utf8)
        } catch {
            throw VGWError.wrap(error, .broker, "cannot write \(config.configurationFile)")
        }
        if let prepare {
            do {
                try await prepare()
            } catch {
                throw VGWError.wrap(error, .broker, "cannot prepare the broker's files")
            }
        }
        try handOverDataDirectory()
        let logOffset = (try? FileManager.default.attributesOfItem(atPath: config.logFile)[.size] as? UInt64) ?? 0
        let child = try await ChildProcess.spawn(
            SpawnRequest(
                executable: config.mosquittoPath, arguments: ["-c", config.configurationFile],
                workingDirectory: config.dataDirectory, stdout: .file(path: config.logFile),
                stderr: .file(path: config.logFile)))
        current = child
        if stopping {
            await child.terminate()
            throw VGWError(.broker, "the broker is stopping")
        }
        try await waitUntilServing(child, logOffset: logOffset)
        logger.info("mosquitto started", ["pid": child.pid, "port": config.listeners.first?.port ?? 0])
        eventSink.yield(.started(child.pid))
        return child
    }

    /// Ready means mosquitto logged "running" (all listeners bound, so a foreign listener
    /// on the port cannot fool us) and the first listener accepts a TCP connection.
    /// No notification exists for either, so this polls every 10 ms, bounded.
    private func waitUntilServing(_ child: ChildProcess, logOffset: UInt64) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + startupTimeout
        let listener = configuration.listeners.first ?? BrokerConfiguration.Listener()
        while true {
            if let status = child.exitStatus {
                current = nil
                throw VGWError(
                    .broker, "mosquitto did not start (\(status)): \(logTail(from: logOffset))")
            }
            if logContainsRunning(from: logOffset), Ports.acceptsConnections(host: listener.host, port: listener.port) {
                return
            }
            if stopping || clock.now >= deadline {
                await child.terminate(grace: .seconds(1))
                current = nil
                throw VGWError(
                    .broker, "mosquitto did not start within \(startupTimeout): \(logTail(from: logOffset))")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    private func logSince(_ offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: configuration.logFile) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private func logContainsRunning(from offset: UInt64) -> Bool {
        logSince(offset).contains(" running\n")
    }

    /// The last lines mosquitto wrote in this run, for error messages.
    private func logTail(from offset: UInt64, lines count: Int = 3) -> String {
        let lines = logSince(offset).split(separator: "\n").suffix(count)
        return lines.isEmpty ? "(no output)" : lines.joined(separator: " / ")
    }

    /// When a root daemon runs the broker as another user, that user must own the data
    /// directory and its files, or the plugin's changes would live only in memory.
    private func handOverDataDirectory() throws {
        guard let user = configuration.user, let (uid, gid) = configuration.brokerUserOwner else {
            if geteuid() == 0, let user = configuration.user, user != "root" {
                throw VGWError(.config, "the broker user \(user) does not exist")
            }
            return
        }
        let directory = configuration.dataDirectory
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for path in [directory] + entries.map({ directory + "/" + $0 }) where chown(path, uid, gid) != 0 {
            throw VGWError(.broker, "cannot hand \(path) to \(user): \(String(cString: strerror(errno)))")
        }
    }
}
