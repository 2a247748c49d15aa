import CSpawn
import Foundation
import Support
import Synchronization

/// Where a standard output stream of a child goes.
public enum Output: Sendable, Equatable {
    /// The daemon's own stream.
    case inherit
    /// Discarded.
    case null
    /// Appended to the file, created with mode 0640 when missing.
    case file(path: String)
}

/// A resource limit applied to the child before it executes.
public struct ResourceLimit: Sendable, Equatable {
    public enum Resource: Sendable, Equatable {
        /// RLIMIT_AS, bytes of virtual memory.
        case addressSpace
        /// RLIMIT_NPROC, processes of the user.
        case processes
        /// RLIMIT_NOFILE, open descriptors.
        case openFiles
        /// RLIMIT_CPU, seconds of CPU time.
        case cpuSeconds

        var cValue: cspawn_limit_resource {
            switch self {
            case .addressSpace: CSPAWN_LIMIT_ADDRESS_SPACE
            case .processes: CSPAWN_LIMIT_PROCESSES
            case .openFiles: CSPAWN_LIMIT_OPEN_FILES
            case .cpuSeconds: CSPAWN_LIMIT_CPU_SECONDS
            }
        }
    }

    public var resource: Resource
    public var soft: UInt64
    public var hard: UInt64

    public init(_ resource: Resource, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }

    /// The same soft and hard limit.
    public init(_ resource: Resource, _ value: UInt64) {
        self.init(resource, soft: value, hard: value)
    }
}

/// Everything needed to start a child; the child gets nothing implicitly from the daemon
/// (environment, signal mask, dispositions, stdin), so that it behaves the same however
/// the daemon itself was started.
public struct SpawnRequest: Sendable {
    /// Absolute path: no PATH lookup, so that what runs is what was configured.
    public var executable: String
    /// The arguments after argv[0] (which is `executable`).
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    public var stdout: Output
    public var stderr: Output
    /// The child leads its own process group, so that signals reach its children too.
    public var newProcessGroup: Bool
    /// Sent to the child when the daemon dies (even by SIGKILL), so that no service outlives it.
    public var parentDeathSignal: Int32?
    public var limits: [ResourceLimit]
    /// `cgroup.procs` files the child joins before exec (no window in which it runs unconfined).
    public var cgroupProcs: [String]
    /// Run as this user and group (no supplementary groups); nil keeps the daemon's.
    public var credentials: (uid: uid_t, gid: gid_t)?
    /// Forbid privilege gains through setuid binaries or file capabilities.
    public var noNewPrivileges: Bool

    public init(
        executable: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String? = nil, stdout: Output = .null, stderr: Output = .null,
        newProcessGroup: Bool = true,
        parentDeathSignal: Int32? = SIGKILL, limits: [ResourceLimit] = [], cgroupProcs: [String] = [],
        credentials: (uid: uid_t, gid: gid_t)? = nil, noNewPrivileges: Bool = false
    ) {
        self.cgroupProcs = cgroupProcs
        self.credentials = credentials
        self.noNewPrivileges = noNewPrivileges
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdout = stdout
        self.stderr = stderr
        self.newProcessGroup = newProcessGroup
        self.parentDeathSignal = parentDeathSignal
        self.limits = limits
    }
}

/// How a child ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus status: Int32) {
        // The WIFEXITED family are macros Swift does not import.
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .signaled(let signal): "killed by \(ExitStatus.signalName(signal))"
        }
    }

    /// "SIGKILL", or "signal 99" for a number glibc does not know.
    public static func signalName(_ signal: Int32) -> String {
        guard let abbreviation = cspawn_signal_abbreviation(signal) else { return "signal \(signal)" }
        return "SIG" + String(cString: abbreviation)
    }
}

/// A child process of the daemon, reaped by its own waiter thread as soon as it exits.
///
/// Only this child's pid is ever waited for (never `waitpid(-1)`), so other code of the
/// process may spawn and reap its own children.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// The executable, for messages.
    public let executable: String
    private let ownsProcessGroup: Bool

    private struct State {
        /// Set while the pid is still ours: the child is a zombie until reaped, so its pid
        /// (and process group id) cannot be reused while `status` is nil.
        var status: ExitStatus?
        var waiters: [CheckedContinuation<ExitStatus, Never>] = []
    }

    private let state = Mutex(State())

    private init(pid: pid_t, executable: String, ownsProcessGroup: Bool) {
        self.pid = pid
        self.executable = executable
        self.ownsProcessGroup = ownsProcessGroup
    }

    /// Starts the program; throws `VGWError(.spawn)` with the child's real errno when
    /// the executable is missing, not executable, or a setup step fails.
    public static func spawn(_ request: SpawnRequest) async throws -> ChildProcess {
        guard request.executable.hasPrefix("/") else {
            throw VGWError(
                .spawn, "cannot start \(request.executable): the executable must be an absolute path")
        }
        let result = await SpawnerThread.shared.run { performSpawn(request) }
        guard result.error == 0 else {
            throw VGWError(.spawn, "cannot start \(request.executable): \(describe(result, request))")
        }
        let child = ChildProcess(
            pid: result.pid, executable: request.executable, ownsProcessGroup: request.newProcessGroup)
        child.startReaper()
        return child
    }

    /// The exit status once the child has exited and been reaped.
    public var exitStatus: ExitStatus? {
        state.withLock { $0.status }
    }

    /// Sends a signal to the child's process group when it leads one (so grandchildren
    /// get it too), else to the child alone. Does nothing once the child has been reaped,
    /// because its pid may already belong to another process.
    public func signal(_ signal: Int32) {
        state.withLock { state in
            guard state.status == nil else { return }
            _ = kill(ownsProcessGroup ? -pid : pid, signal)
        }
    }

    /// Waits for the child to exit. Any number of callers may wait; the status is kept.
    /// Not interrupted by task cancellation: bound the wait with `terminate(grace:)`.
    public func wait() async -> ExitStatus {
        await withCheckedContinuation { continuation in
            let status: ExitStatus? = state.withLock { state in
                if state.status == nil { state.waiters.append(continuation) }
                return state.status
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// SIGTERM, then SIGKILL if the child has not exited after `grace`. Safe to call
    /// any number of times, also concurrently and after the child has exited.
    @discardableResult
    public func terminate(grace: Duration = .seconds(5)) async -> ExitStatus {
        if let status = exitStatus { return status }
        signal(SIGTERM)
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = await self.wait()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let exitedInTime = await group.next() ?? false
            if !exitedInTime { signal(SIGKILL) }
            group.cancelAll()
        }
        return await wait()
    }

    /// One thread per child blocks in waitid for exactly this pid. It first only peeks
    /// (WNOWAIT) and then reaps under the lock, so `signal` never hits a reused pid.
    private func startReaper() {
        let thread = Thread { [self] in
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            let waiters = state.withLock { state in
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                let exit = ExitStatus(waitStatus: status)
                state.status = exit
                defer { state.waiters = [] }
                return state.waiters.map { ($0, exit) }
            }
            for (continuation, exit) in waiters { continuation.resume(returning: exit) }
        }
        thread.name = "reaper \(pid)"
        thread.stackSize = 64 * 1024
        thread.start()
    }

    private static func describe(_ result: cspawn_result, _ request: SpawnRequest) -> String {
        let reason = String(cString: strerror(result.error))
        switch result.stage {
        case CSPAWN_STAGE_OPEN_OUTPUT: return "cannot open its output file: \(reason)"
        case CSPAWN_STAGE_PARENT_DIED: return "cannot set the parent-death signal: \(reason)"
        case CSPAWN_STAGE_PROCESS_GROUP: return "cannot create a process group: \(reason)"
        case CSPAWN_STAGE_REDIRECT: return "cannot redirect its standard streams: \(reason)"
        case CSPAWN_STAGE_CHDIR:
            return "cannot change directory to \(request.workingDirectory ?? ""): \(reason)"
        case CSPAWN_STAGE_RLIMIT: return "cannot set a resource limit: \(reason)"
        case CSPAWN_STAGE_CGROUP: return "cannot join its cgroup: \(reason)"
        case CSPAWN_STAGE_CREDENTIALS: return "cannot switch to its user: \(reason)"
        case CSPAWN_STAGE_NO_NEW_PRIVILEGES: return "cannot set no_new_privs: \(reason)"
        default: return reason
        }
    }

    /// Converts the request to C strings that live exactly as long as the call.
    private static func performSpawn(_ request: SpawnRequest) -> cspawn_result {
        let argv = CStringArray([request.executable] + request.arguments)
        let envp = CStringArray(
            request.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        let cgroups = CStringArray(request.cgroupProcs)
        let limits = request.limits.map {
            cspawn_limit(resource: $0.resource.cValue, soft: $0.soft, hard: $0.hard)
        }
        return request.executable.withCString { path in
            withOptionalCString(request.workingDirectory) { directory in
                withOutput(request.stdout) { out in
                    withOutput(request.stderr) { err in
                        limits.withUnsafeBufferPointer { limitBuffer in
                            var spawn = cspawn_request(
                                path: path, argv: argv.pointers, envp: envp.pointers,
                                working_directory: directory, out: out, err: err,
                                new_process_group: request.newProcessGroup ? 1 : 0,
                                parent_death_signal: request.parentDeathSignal ?? 0,
                                limits: limitBuffer.baseAddress, limit_count: Int32(limitBuffer.count),
                                cgroup_procs: cgroups.pointers, change_credentials: request.credentials == nil ? 0 : 1,
                                uid: request.credentials?.uid ?? 0, gid: request.credentials?.gid ?? 0,
                                no_new_privileges: request.noNewPrivileges ? 1 : 0)
                            return cspawn(&spawn)
                        }
                    }
                }
            }
        }
    }

    private static func withOptionalCString<R>(
        _ string: String?, _ body: (UnsafePointer<CChar>?) -> R
    ) -> R {
        guard let string else { return body(nil) }
        return string.withCString { body($0) }
    }

    private static func withOutput<R>(_ output: Output, _ body: (cspawn_output) -> R) -> R {
        switch output {
        case .inherit: body(cspawn_output(mode: CSPAWN_OUTPUT_INHERIT, path: nil))
        case .null: body(cspawn_output(mode: CSPAWN_OUTPUT_NULL, path: nil))
        case .file(let path):
            path.withCString { body(cspawn_output(mode: CSPAWN_OUTPUT_FILE, path: $0)) }
        }
    }
}

/// A NULL-terminated array of C strings (argv, envp), freed in deinit.
private final class CStringArray {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: count + 1)
        for (index, string) in strings.enumerated() {
            pointers[index] = strdup(string)
        }
        pointers[count] = nil
    }

    deinit {
        for index in 0..<count { free(pointers[index]) }
        pointers.deallocate()
    }
}
