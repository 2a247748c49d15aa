import Foundation
import Supervisor
import Support
import TestSupport
import Testing

/// Swift Testing has an `ExitStatus` of its own (for exit tests).
private typealias ExitStatus = Supervisor.ExitStatus

/// A shell command as a request; the tests use /bin/sh because it is always there.
private func shell(
    _ script: String, environment: [String: String] = ["PATH": "/usr/bin:/bin"],
    workingDirectory: String? = nil,
    stdout: Output = .null, stderr: Output = .null, limits: [ResourceLimit] = []
) -> SpawnRequest {
    SpawnRequest(
        executable: "/bin/sh", arguments: ["-c", script], environment: environment,
        workingDirectory: workingDirectory, stdout: stdout, stderr: stderr, limits: limits)
}

/// Waits with a bound, so that a broken test fails instead of hanging: past `limit` the
/// child is killed and the test records an issue.
private func waitBounded(_ child: ChildProcess, _ limit: Duration = .seconds(10)) async
    -> ExitStatus
{
    let watchdog = Task {
        try await Task.sleep(for: limit)
        Issue.record("child \(child.pid) still running after \(limit)")
        child.signal(SIGKILL)
    }
    defer { watchdog.cancel() }
    return await child.wait()
}

/// Polls for a condition that has no event to await (a file another process writes).
private func eventually(_ limit: Duration = .seconds(5), _ condition: () -> Bool) async throws
    -> Bool
{
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

private func statusField(_ pid: pid_t, _ field: String) throws -> String? {
    let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    return text.split(separator: "\n").first { $0.hasPrefix(field + ":") }
        .map { $0.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces) }
}

private func isAlive(_ pid: pid_t) -> Bool {
    kill(pid, 0) == 0
}

@Suite struct ChildProcessTests {
    @Test func exitCodeIsReported() async throws {
        let child = try await ChildProcess.spawn(shell("exit 3"))
        #expect(await child.wait() == .exited(3))
        #expect(child.exitStatus == .exited(3))
        #expect(ExitStatus.exited(3).description == "exit code 3")
    }

    @Test func signalIsReported() async throws {
        let child = try await ChildProcess.spawn(shell("kill -KILL $$"))
        #expect(await child.wait() == .signaled(SIGKILL))
        #expect(ExitStatus.signaled(SIGKILL).description == "killed by SIGKILL")
    }

    @Test func manyWaitersAllGetTheStatus() async throws {
        let child = try await ChildProcess.spawn(shell("exit 7"))
        async let first = child.wait()
        async let second = child.wait()
        #expect(await [first, second] == [.exited(7), .exited(7)])
        #expect(await child.wait() == .exited(7))
    }

    @Test func environmentArgumentsDirectoryAndOutputsAreApplied() async throws {
        try await withTemporaryDirectory { dir in
            let out = dir.file("out.log")
            let err = dir.file("err.log")
            try "earlier\n".write(toFile: out, atomically: true, encoding: .utf8)
            let request = SpawnRequest(
                executable: "/bin/sh",
                arguments: ["-c", "echo \"$GREETING $1 $(pwd)\"; echo oops >&2", "sh", "two words"],
                environment: ["GREETING": "hello"], workingDirectory: dir.path, stdout: .file(path: out),
                stderr: .file(path: err))
            let child = try await ChildProcess.spawn(request)
            #expect(await waitBounded(child) == .exited(0))
            #expect(
                try String(contentsOfFile: out, encoding: .utf8) == "earlier\nhello two words \(dir.path)\n"
            )
            #expect(try String(contentsOfFile: err, encoding: .utf8) == "oops\n")
            let mode = try FileManager.default.attributesOfItem(atPath: err)[.posixPermissions] as? Int
            #expect(mode == 0o640 & ~Int(umaskValue()))
        }
    }

    @Test func onlyTheGivenEnvironmentIsPassed() async throws {
        try await withTemporaryDirectory { dir in
            let out = dir.file("env")
            let child = try await ChildProcess.spawn(
                SpawnRequest(
                    executable: "/usr/bin/env", environment: ["ONLY": "this"], stdout: .file(path: out)))
            #expect(await waitBounded(child) == .exited(0))
            #expect(try String(contentsOfFile: out, encoding: .utf8) == "ONLY=this\n")
        }
    }

    @Test func missingExecutableThrowsWithErrnoText() async throws {
        let error = await #expect(throws: VGWError.self) {
            try await ChildProcess.spawn(SpawnRequest(executable: "/nonexistent/program"))
        }
        #expect(error?.code == .spawn)
        #expect(error?.message == "cannot start /nonexistent/program: No such file or directory")
    }

    @Test func missingWorkingDirectoryThrows() async throws {
        let error = await #expect(throws: VGWError.self) {
            try await ChildProcess.spawn(shell("true", workingDirectory: "/nonexistent"))
        }
        #expect(
            error?.message
                == "cannot start /bin/sh: cannot change directory to /nonexistent: No such file or directory"
        )
    }

    @Test func relativeExecutableIsRejected() async throws {
        await #expect(throws: VGWError.self) {
            try await ChildProcess.spawn(SpawnRequest(executable: "sh"))
        }
    }

    @Test func signalMaskIsEmptyAndDispositionsDefaultEvenFromATask() async throws {
        // Block and ignore signals here, as a runtime might, to prove the child does not inherit them.
        let child = try await Task.detached {
            var blocked = sigset_t()
            sigemptyset(&blocked)
            sigaddset(&blocked, SIGTERM)
            sigaddset(&blocked, SIGUSR1)
            pthread_sigmask(SIG_BLOCK, &blocked, nil)
            defer { pthread_sigmask(SIG_UNBLOCK, &blocked, nil) }
            return try await ChildProcess.spawn(SpawnRequest(executable: "/bin/sleep", arguments: ["30"]))
        }.value
        let blocked = try statusField(child.pid, "SigBlk")
        let ignored = try statusField(child.pid, "SigIgn")
        #expect(blocked == "0000000000000000")
        #expect(ignored == "0000000000000000")
        #expect(await child.terminate(grace: .seconds(5)) == .signaled(SIGTERM))
    }

    @Test func terminateEscalatesToSigkillWhenSigtermIsIgnored() async throws {
        try await withTemporaryDirectory { dir in
            let ready = dir.file("ready")
            let child = try await ChildProcess.spawn(
                shell("trap '' TERM; touch \(ready); while :; do sleep 1; done"))
            #expect(try await eventually { FileManager.default.fileExists(atPath: ready) })
            let clock = ContinuousClock()
            let started = clock.now
            let status = await child.terminate(grace: .milliseconds(300))
            #expect(status == .signaled(SIGKILL))
            #expect(clock.now - started < .seconds(3))
            // Idempotent: the same status again, without signalling anything.
            #expect(await child.terminate() == .signaled(SIGKILL))
        }
    }

    @Test func processGroupSignalReachesGrandchildren() async throws {
        try await withTemporaryDirectory { dir in
            let pidFile = dir.file("grandchild")
            let child = try await ChildProcess.spawn(
                shell("sleep 30 & echo $! > \(pidFile).tmp; mv \(pidFile).tmp \(pidFile); wait"))
            #expect(try await eventually { FileManager.default.fileExists(atPath: pidFile) })
            let text = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(
                in: .whitespacesAndNewlines)
            let grandchild = try #require(pid_t(text))
            #expect(getpgid(grandchild) == child.pid)
            #expect(await child.terminate(grace: .seconds(5)) == .signaled(SIGTERM))
            // The grandchild is not ours to reap (init adopts it); it must be gone or a zombie.
            #expect(
                try await eventually {
                    !isAlive(grandchild) || (try? statusField(grandchild, "State"))?.hasPrefix("Z") == true
                })
        }
    }

    @Test func resourceLimitsAreApplied() async throws {
        let child = try await ChildProcess.spawn(
            SpawnRequest(
                executable: "/bin/sleep", arguments: ["30"],
                limits: [ResourceLimit(.openFiles, soft: 123, hard: 456), ResourceLimit(.cpuSeconds, 77)]))
        let limits = try String(contentsOfFile: "/proc/\(child.pid)/limits", encoding: .utf8)
        let openFiles = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }
        #expect(
            openFiles?.split(separator: " ", omittingEmptySubsequences: true).suffix(3) == [
                "123", "456", "files",
            ])
        let cpu = limits.split(separator: "\n").first { $0.hasPrefix("Max cpu time") }
        #expect(
            cpu?.split(separator: " ", omittingEmptySubsequences: true).suffix(3) == [
                "77", "77", "seconds",
            ])
        await child.terminate()
    }

    /// The parent-death signal only fires when the spawning thread dies, which in this
    /// process it never does; so the child asks the kernel itself, with prctl(PR_GET_PDEATHSIG).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func parentDeathSignalIsSet() async throws {
        try await withTemporaryDirectory { dir in
            let script = """
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                value = ctypes.c_int(0)
                libc.prctl(2, ctypes.byref(value), 0, 0, 0)
                print(value.value)
                """
            for (signal, expected) in [(SIGKILL, "\(SIGKILL)"), (SIGTERM, "\(SIGTERM)")]
                as [(Int32?, String)] + [(nil, "0")]
            {
                let out = dir.file("pdeathsig-\(expected)")
                let child = try await ChildProcess.spawn(
                    SpawnRequest(
                        executable: "/usr/bin/python3", arguments: ["-c", script], stdout: .file(path: out),
                        stderr: .inherit, parentDeathSignal: signal))
                #expect(await waitBounded(child) == .exited(0))
                #expect(try String(contentsOfFile: out, encoding: .utf8) == expected + "\n")
            }
        }
    }

    /// Services run as an unprivileged user, with no way back up, and keep their
    /// parent-death signal across the change of user (the kernel clears it on setuid).
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func credentialsAndNoNewPrivilegesAreApplied() async throws {
        try await withTemporaryDirectory { dir in
            chmod(dir.path, 0o777)
            let out = dir.file("ids")
            let script = """
                import ctypes, os
                libc = ctypes.CDLL(None, use_errno=True)
                value = ctypes.c_int(0)
                libc.prctl(2, ctypes.byref(value), 0, 0, 0)
                status = open("/proc/self/status").read()
                nnp = [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")][0]
                print(os.getuid(), os.getgid(), len(os.getgroups()), value.value, nnp)
                """
            let child = try await ChildProcess.spawn(
                SpawnRequest(
                    executable: "/usr/bin/python3", arguments: ["-c", script], stdout: .file(path: out),
                    stderr: .inherit, credentials: (uid: 65534, gid: 65534), noNewPrivileges: true))
            #expect(await waitBounded(child) == .exited(0))
            #expect(try String(contentsOfFile: out, encoding: .utf8) == "65534 65534 0 \(SIGKILL) 1\n")
        }
    }

    @Test func childNotInItsOwnGroupGetsSignalToPidOnly() async throws {
        let child = try await ChildProcess.spawn(
            SpawnRequest(executable: "/bin/sleep", arguments: ["30"], newProcessGroup: false))
        #expect(getpgid(child.pid) == getpgid(0))
        child.signal(SIGTERM)
        #expect(await waitBounded(child) == .signaled(SIGTERM))
    }

    @Test func exitedChildIsReapedAndNotSignalled() async throws {
        let child = try await ChildProcess.spawn(shell("exit 0"))
        #expect(await child.wait() == .exited(0))
        // Reaped: the pid no longer refers to our child (no zombie left behind).
        var status: Int32 = 0
        #expect(waitpid(child.pid, &status, WNOHANG) == -1)
        child.signal(SIGKILL)
        #expect(child.exitStatus == .exited(0))
    }
}

private func umaskValue() -> mode_t {
    let current = umask(0)
    umask(current)
    return current
}
