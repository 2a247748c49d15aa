import Foundation
import Services
import Supervisor
import Support
import Synchronization
import TestSupport
import Testing

/// The supervisor on its own, with /bin/sh services and no gateway.
@Suite(.timeLimit(.minutes(2)))
struct ServiceSupervisorTests {
    static func tuning() -> ServiceSupervisor.Tuning {
        var tuning = ServiceSupervisor.Tuning()
        tuning.initialBackoff = .milliseconds(20)
        tuning.maximumBackoff = .milliseconds(80)
        tuning.healthyRun = .seconds(5)
        tuning.crashLoopThreshold = 3
        tuning.stopGrace = .seconds(1)
        return tuning
    }

    static func spec(_ dir: TemporaryDirectory, _ script: String, restart: RestartPolicy) -> ServiceSpec {
        ServiceSpec(
            id: ServiceID(provider: "p", bundle: "b"), executable: "/bin/sh", arguments: ["-c", script],
            environment: ["PATH": "/usr/bin:/bin"], workingDirectory: dir.path, logDirectory: dir.path + "/logs",
            restart: restart)
    }

    /// Records every status change, and lets a test wait for one.
    final class Changes: Sendable {
        let all = Mutex<[ServiceStatus]>([])
        let stream: AsyncStream<ServiceStatus>
        let sink: AsyncStream<ServiceStatus>.Continuation
        init() { (stream, sink) = AsyncStream.makeStream() }
        func record(_ status: ServiceStatus) {
            all.withLock { $0.append(status) }
            sink.yield(status)
        }
        func wait(for state: ServiceState, within limit: Duration = .seconds(10)) async -> ServiceStatus? {
            await firstMatch(stream, within: limit) { $0.state == state }
        }
    }

    @Test func crashLoopIsDetectedAndReported() async throws {
        try await withTemporaryDirectory { dir in
            let changes = Changes()
            let (finished, finish) = AsyncStream.makeStream(of: ServiceID.self)
            let supervisor = ServiceSupervisor(
                hooks: .init(finished: { finish.yield($0) }, changed: { changes.record($0) }),
                tuning: Self.tuning())
            await supervisor.start(Self.spec(dir, "echo boom >&2; exit 4", restart: .always))
            let loop = try #require(await changes.wait(for: .crashLoop))
            #expect(loop.lastExit == "exit code 4")
            #expect(loop.restarts == 2)
            var ends = finished.makeAsyncIterator()
            #expect(await ends.next() == loop.id)
            let logs = await supervisor.logs(loop.id, logDirectory: dir.path + "/logs", lines: 10)
            #expect(logs.stderr == "boom\nboom\nboom")
            // Statuses went out in order: the last one published is the crash loop.
            #expect(changes.all.withLock { $0.last?.state } == .crashLoop)
        }
    }

    @Test func onFailureDoesNotRestartACleanExitButRestartsAFailure() async throws {
        try await withTemporaryDirectory { dir in
            let changes = Changes()
            let supervisor = ServiceSupervisor(hooks: .init(changed: { changes.record($0) }), tuning: Self.tuning())
            await supervisor.start(Self.spec(dir, "exit 0", restart: .onFailure))
            let exited = try #require(await changes.wait(for: .exited))
            #expect(exited.restarts == 0 && exited.lastExit == "exit code 0")

            let marker = dir.path + "/ran-once"
            await supervisor.start(
                Self.spec(dir, "if [ -e \(marker) ]; then exit 0; fi; touch \(marker); exit 1", restart: .onFailure))
            let second = try #require(await changes.wait(for: .exited))
            #expect(second.restarts == 1)
        }
    }

    @Test func stopKillsTheWholeProcessGroupAndReportsStopped() async throws {
        try await withTemporaryDirectory { dir in
            let changes = Changes()
            let supervisor = ServiceSupervisor(hooks: .init(changed: { changes.record($0) }), tuning: Self.tuning())
            await supervisor.start(
                Self.spec(
                    dir,
                    "trap '' TERM; sleep 60 & echo $! > \(dir.path)/child.tmp; mv \(dir.path)/child.tmp \(dir.path)/child; wait",
                    restart: .always))
            let running = try #require(await changes.wait(for: .running))
            let pid = try #require(running.pid)
            let deadline = ContinuousClock.now + .seconds(5)
            while !FileManager.default.fileExists(atPath: dir.path + "/child"), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))  // the shell writes it; no event to await
            }
            await supervisor.stop(running.id)
            #expect(await supervisor.status(running.id) == nil)
            #expect(!ProcessProbe.isAlive(pid))
            let child = try String(contentsOfFile: dir.path + "/child", encoding: .utf8)
            let childPID = try #require(pid_t(child.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(await ProcessProbe.waitUntilGone(childPID, within: .seconds(2)))
        }
    }

    @Test func prepareFailureCountsAsAFailedStart() async throws {
        try await withTemporaryDirectory { dir in
            let changes = Changes()
            let supervisor = ServiceSupervisor(
                hooks: .init(
                    prepare: { _ in throw VGWError(.broker, "no identity today") }, changed: { changes.record($0) }),
                tuning: Self.tuning())
            await supervisor.start(Self.spec(dir, "exit 0", restart: .always))
            let loop = try #require(await changes.wait(for: .crashLoop))
            #expect(loop.lastExit == "no identity today")
        }
    }

    @Test func logsAreBoundedAndTailed() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir.path + "/stdout.log"
            let lines = (1...2000).map { "line \($0)" }.joined(separator: "\n") + "\n"
            try Data(lines.utf8).write(to: URL(fileURLWithPath: path))
            ServiceLogs.trim(path, maxBytes: 4096)
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            #expect(size == 0)
            let rotated = (try FileManager.default.attributesOfItem(atPath: path + ".1")[.size] as? Int) ?? -1
            #expect(rotated <= 2048)
            #expect(ServiceLogs.tail(path, lines: 2) == "line 1999\nline 2000")
            try Data("fresh\n".utf8).write(to: URL(fileURLWithPath: path))
            #expect(ServiceLogs.tail(path, lines: 2) == "line 2000\nfresh")
            #expect(ServiceLogs.tail(dir.path + "/missing.log", lines: 5) == "")
        }
    }
}

extension ServiceStatus {
    var id: ServiceID { ServiceID(provider: provider, bundle: bundle) }
}
