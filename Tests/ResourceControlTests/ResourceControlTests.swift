import Foundation
import Supervisor
import Support
import Testing

@testable import ResourceControl

/// Whether this machine can run the cgroup tests: root and a writable hierarchy.
private let cgroupsUsable: Bool = {
    if case .rlimits = ResourceMechanism.detect() { return false }
    return true
}()

private let mib: UInt64 = 1 << 20

/// A shell that doubles a string until it holds `2^steps` bytes, then exits 0: an allocation
/// that fails (or is killed) under a memory limit and succeeds without one.
private func hogScript(steps: Int = 40) -> String {
    "s=x; i=0; while [ $i -lt \(steps) ]; do s=\"$s$s\"; i=$((i+1)); done; exit 0"
}

/// Runs `body` with a controller on a unique root group, and removes the group (killing what
/// runs in it) afterwards, also when `body` throws.
private func withController<T>(
    mechanism: ResourceMechanism? = nil, _ body: (ResourceController) async throws -> T
) async throws -> T {
    let name = "vgw-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let controller = try ResourceController(rootName: name, mechanism: mechanism ?? ResourceMechanism.detect())
    do {
        let result = try await body(controller)
        try controller.removeAll()
        try #require(!groupExists(controller))
        return result
    } catch {
        try? controller.removeAll()
        throw error
    }
}

private func groupExists(_ controller: ResourceController) -> Bool {
    switch controller.mechanism {
    case .cgroupV2(let root): return FileIO.exists(root + "/" + controller.rootName)
    case .cgroupV1(let memory, let cpu, let pids, let cpuacct):
        return [memory, cpu, pids, cpuacct].compactMap { $0 }.contains {
            FileIO.exists($0 + "/" + controller.rootName)
        }
    case .rlimits: return false
    }
}

/// Spawns the shell script inside the group (attached before the program starts), and
/// terminates it when `body` ends however it ends.
private func withChild<T>(
    in group: ResourceGroup, script: String, _ body: (ChildProcess) async throws -> T
) async throws -> T {
    let request = group.confine(SpawnRequest(executable: "/bin/sh", arguments: ["-c", script]))
    let child = try await ChildProcess.spawn(request)
    do {
        let result = try await body(child)
        await child.terminate(grace: .milliseconds(100))
        return result
    } catch {
        await child.terminate(grace: .milliseconds(100))
        throw error
    }
}

/// The child's exit status, or nil if it has not exited within `timeout`.
private func exitStatus(of child: ChildProcess, within timeout: Duration) async -> Supervisor.ExitStatus? {
    await withTaskGroup(of: Supervisor.ExitStatus?.self) { group in
        group.addTask { await child.wait() }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        if first == nil { return child.exitStatus }
        return first
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes (cgroup counters have no
/// change notification); returns whether it held.
private func eventually(within timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

@Suite(.serialized) struct ResourceControlTests {
    @Test func limitsAreCodableAndDescribed() throws {
        let limits = ResourceLimits(memoryBytes: 128 * mib, cpu: 0.5, pids: 16)
        let decoded = try JSONDecoder().decode(ResourceLimits.self, from: JSONEncoder().encode(limits))
        #expect(decoded == limits)
        #expect(limits.description == "memory 128 MiB, cpu 0.5, pids 16")
        #expect(ResourceMechanism.rlimits.description == "rlimits (no writable cgroup)")
        #expect(
            ResourceMechanism.cgroupV1(memory: "/m", cpu: nil, pids: "/p").description == "cgroup v1 (memory, pids)")
        #expect(
            ResourceMechanism.cgroupV2(root: "/sys/fs/cgroup/vgw.slice").description
                == "cgroup v2 (/sys/fs/cgroup/vgw.slice)")
    }

    @Test func rejectsNamesThatCouldEscapeTheTree() throws {
        let controller = try ResourceController(rootName: "vgw-test-names", mechanism: .rlimits)
        for bad in ["", "..", "a/b", "memory.max", ".hidden"] {
            #expect(throws: VGWError.self) { try controller.ensureGroup(path: ["ok", bad], limits: .unlimited) }
        }
        #expect(throws: VGWError.self) { try ResourceController(rootName: "../etc", mechanism: .rlimits) }
    }

    @Test func forcedChoices() throws {
        #expect(try ResourceMechanism.resolve(.rlimits) == .rlimits)
        #expect(ResourceMechanism.Choice(rawValue: "cgroup-v1") == .cgroupV1)
        #expect(throws: VGWError.self) { try ResourceMechanism.resolve(.cgroupV2, preferredRoot: "/nonexistent") }
    }

    @Test(.enabled(if: getuid() == 0 && FileIO.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")))
    func detectsWritableCgroupV1Here() throws {
        let mechanism = ResourceMechanism.detect()
        guard case .cgroupV1(let memory, let cpu, let pids, let cpuacct) = mechanism else {
            Issue.record("expected cgroup v1, got \(mechanism)")
            return
        }
        #expect(memory != nil && cpu != nil && pids != nil && cpuacct != nil)
        #expect(mechanism.description == "cgroup v1 (memory, cpu, pids)")
        // The probe leaves nothing behind.
        for base in [memory, cpu, pids].compactMap({ $0 }) {
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: base).filter {
                $0.hasPrefix(".vgw-probe")
            }
            #expect(leftovers.isEmpty)
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func memoryHogIsKilledByTheOOMKiller() async throws {
        try await withController { controller in
            let group = try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(memoryBytes: 32 * mib))
            let before = controller.usage(of: group)
            try await withChild(in: group, script: hogScript()) { child in
                let status = await exitStatus(of: child, within: .seconds(20))
                #expect(status == .signaled(SIGKILL))
                #expect(controller.wasOOMKilled(group, since: before))
                let reason = controller.exitReason(try #require(status), group: group, since: before)
                #expect(reason == "killed: memory limit (32 MiB) exceeded")
                let peak = try #require(controller.usage(of: group).memoryPeakBytes)
                #expect(peak <= 32 * mib && peak > 16 * mib)
            }
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func nestedBundleInheritsTheProviderMemoryCap() async throws {
        try await withController { controller in
            _ = try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(memoryBytes: 32 * mib))
            let bundle = try controller.ensureGroup(path: ["acme", "thermostat"], limits: .unlimited)
            let before = controller.usage(of: bundle)
            try await withChild(in: bundle, script: hogScript()) { child in
                let status = await exitStatus(of: child, within: .seconds(20))
                #expect(status == .signaled(SIGKILL))
                let exceeded = try #require(controller.memoryLimitExceeded(in: bundle, since: before))
                #expect(exceeded.path == ["acme"])
                #expect(
                    controller.exitReason(try #require(status), group: bundle, since: before)
                        == "killed: memory limit (32 MiB) of acme exceeded")
            }
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func bundleMayAskForMoreCPUThanItsProvider() async throws {
        try await withController { controller in
            _ = try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(cpu: 0.5))
            let bundle = try controller.ensureGroup(path: ["acme", "b"], limits: ResourceLimits(cpu: 1.5))
            #expect(bundle.limits.cpu == 1.5)
            if let cpu = bundle.directories[.cpu] {
                #expect(try FileIO.read(cpu + "/cpu.cfs_quota_us") == "50000\n")
            }
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func unlimitedGroupLetsTheSameAllocationSucceed() async throws {
        // The control for the two tests above: the script itself is fine without a limit.
        try await withController { controller in
            let group = try controller.ensureGroup(path: ["acme"], limits: .unlimited)
            let before = controller.usage(of: group)
            try await withChild(in: group, script: hogScript(steps: 26)) { child in
                #expect(await exitStatus(of: child, within: .seconds(20)) == .exited(0))
                #expect(!controller.wasOOMKilled(group, since: before))
            }
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func forkBombIsCappedAndFullyRemoved() async throws {
        try await withController { controller in
            let group = try controller.ensureGroup(path: ["acme", "bomb"], limits: ResourceLimits(pids: 16))
            var seen = Set<pid_t>()
            // bash, unlike dash, retries a failed fork instead of exiting, so the bomb keeps
            // pushing against the limit until the group is removed.
            let request = group.confine(
                SpawnRequest(executable: "/bin/bash", arguments: ["-c", "while :; do sleep 10 & done"]))
            let child = try await ChildProcess.spawn(request)
            do {
                var maximum = 0
                let saturated = await eventually(within: .seconds(10)) {
                    let pids = controller.usage(of: group).pids ?? 0
                    maximum = max(maximum, pids)
                    for file in group.procsFiles {
                        let text = (try? FileIO.read(file)) ?? ""
                        seen.formUnion(text.split(separator: "\n").compactMap { pid_t($0) })
                    }
                    return pids >= 16
                }
                #expect(saturated)
                // Keep sampling for a while: the count must never exceed the limit.
                _ = await eventually(within: .milliseconds(300)) {
                    maximum = max(maximum, controller.usage(of: group).pids ?? 0)
                    return false
                }
                #expect(maximum == 16)
                let events = try FileIO.read(
                    try #require(group.directories[.pids] ?? group.directories[.unified]) + "/pids.events")
                #expect(events != "max 0\n", "no fork was refused")
                try controller.removeGroup(path: ["acme", "bomb"])
                #expect(await exitStatus(of: child, within: .seconds(5)) == .signaled(SIGKILL))
            } catch {
                await child.terminate(grace: .milliseconds(100))
                throw error
            }
            #expect(seen.count >= 15)
            for pid in seen {
                // Gone, or at most a zombie waiting for its (new) parent to reap it.
                let alive = kill(pid, 0) == 0
                let state = (try? FileIO.read("/proc/\(pid)/stat"))?.split(separator: ")").last?.split(separator: " ")
                    .first
                #expect(!alive || state == "Z", "process \(pid) survived")
            }
            #expect(controller.group(path: ["acme", "bomb"]) == nil)
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func cpuHogGetsItsShare() async throws {
        try await withController { controller in
            let group = try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(cpu: 0.2))
            try await withChild(in: group, script: "while :; do :; done") { child in
                // Let the quota settle into its periods before measuring.
                #expect(await eventually(within: .seconds(5)) { (controller.usage(of: group).cpuNanoseconds ?? 0) > 0 })
                let start = ContinuousClock.now
                let before = try #require(controller.usage(of: group).cpuNanoseconds)
                try await Task.sleep(for: .seconds(1))  // the measurement interval, not a synchronisation
                let after = try #require(controller.usage(of: group).cpuNanoseconds)
                let elapsed = ContinuousClock.now - start
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let share = Double(after - before) / 1e9 / seconds
                print("cpu share with limit 0.2: \(String(format: "%.3f", share)) of one CPU")
                #expect(share < 0.4)
                #expect(share > 0.05)
                #expect(child.exitStatus == nil)
            }
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func usageOfARunningProcessIsPlausible() async throws {
        try await withController { controller in
            let group = try controller.ensureGroup(
                path: ["acme", "meter"], limits: ResourceLimits(memoryBytes: 256 * mib))
            // About 8 MiB of string, then spin.
            try await withChild(
                in: group, script: hogScript(steps: 23).replacingOccurrences(of: "exit 0", with: "while :; do :; done")
            ) { _ in
                let ready = await eventually(within: .seconds(10)) {
                    let usage = controller.usage(of: group)
                    return (usage.memoryBytes ?? 0) > 8 * mib && (usage.cpuNanoseconds ?? 0) > 50_000_000
                }
                #expect(ready)
                let usage = controller.usage(of: group)
                #expect(usage.pids == 1)
                #expect((usage.memoryBytes ?? 0) < 256 * mib)
                #expect((usage.memoryPeakBytes ?? 0) >= (usage.memoryBytes ?? .max))
                #expect(usage.oomKills == 0)
            }
        }
    }

    @Test(.enabled(if: cgroupsUsable)) func attachAfterSpawnMovesTheProcess() async throws {
        try await withController { controller in
            let group = try controller.ensureGroup(path: ["late"], limits: ResourceLimits(pids: 4))
            let child = try await ChildProcess.spawn(SpawnRequest(executable: "/bin/sleep", arguments: ["30"]))
            do {
                try group.attach(pid: child.pid)
                for file in group.procsFiles {
                    #expect(try FileIO.read(file).split(separator: "\n").contains("\(child.pid)"))
                }
                #expect(controller.usage(of: group).pids == 1)
            } catch {
                await child.terminate(grace: .milliseconds(100))
                throw error
            }
            // Removal kills it.
            try controller.removeGroup(path: ["late"])
            #expect(await exitStatus(of: child, within: .seconds(5)) == .signaled(SIGKILL))
        }
    }

    /// This machine's unified hierarchy has no controllers (all are bound to v1), but it still
    /// exercises the v2 tree: creation, attach, usage from cpu.stat, cgroup.kill and removal.
    @Test(.enabled(if: getuid() == 0 && FileIO.exists("/sys/fs/cgroup/unified/cgroup.procs")))
    func cgroupV2TreeWithoutControllers() async throws {
        try await withController(mechanism: .cgroupV2(root: "/sys/fs/cgroup/unified")) { controller in
            #expect(throws: VGWError.self) {
                try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(memoryBytes: 32 * mib))
            }
            let group = try controller.ensureGroup(path: ["acme", "thermostat"], limits: .unlimited)
            #expect(group.procsFiles.count == 1)
            let request = group.confine(
                SpawnRequest(executable: "/bin/sh", arguments: ["-c", "sleep 30 & sleep 30 & while :; do :; done"]))
            let child = try await ChildProcess.spawn(request)
            do {
                #expect(await eventually(within: .seconds(10)) { controller.usage(of: group).pids == 3 })
                #expect(
                    await eventually(within: .seconds(10)) { (controller.usage(of: group).cpuNanoseconds ?? 0) > 0 })
                try controller.removeGroup(path: ["acme"])
                #expect(await exitStatus(of: child, within: .seconds(5)) == .signaled(SIGKILL))
                #expect(!FileIO.exists("/sys/fs/cgroup/unified/\(controller.rootName)/acme"))
            } catch {
                await child.terminate(grace: .milliseconds(100))
                throw error
            }
        }
    }

    @Test func rlimitFallbackMapping() throws {
        let controller = try ResourceController(rootName: "vgw-test-map", mechanism: .rlimits)
        let limits = controller.rlimitFallback(for: ResourceLimits(memoryBytes: 64 * mib, cpu: 0.5, pids: 16))
        #expect(limits == [ResourceLimit(.addressSpace, 64 * mib), ResourceLimit(.processes, 16)])
        // rlimits do not nest, so a bundle gets the tightest limit of itself and its provider.
        _ = try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(memoryBytes: 64 * mib))
        let bundle = try controller.ensureGroup(
            path: ["acme", "b"], limits: ResourceLimits(memoryBytes: 128 * mib, pids: 8))
        #expect(bundle.spawnLimits == [ResourceLimit(.addressSpace, 64 * mib), ResourceLimit(.processes, 8)])
        #expect(bundle.procsFiles.isEmpty)
        #expect(controller.usage(of: bundle) == ResourceUsage())
        try controller.removeAll()
    }

    @Test func rlimitFallbackStopsAnAllocation() async throws {
        try await withController(mechanism: .rlimits) { controller in
            let group = try controller.ensureGroup(path: ["acme"], limits: ResourceLimits(memoryBytes: 32 * mib))
            try await withChild(in: group, script: hogScript(steps: 26)) { child in
                let status = try #require(await exitStatus(of: child, within: .seconds(20)))
                // The shell cannot allocate and fails; without the limit it would exit 0.
                #expect(status != .exited(0))
                #expect(status != .signaled(SIGKILL))
            }
            // The control: the same script succeeds without a limit.
            let free = try controller.ensureGroup(path: ["free"], limits: .unlimited)
            try await withChild(in: free, script: hogScript(steps: 26)) { child in
                #expect(await exitStatus(of: child, within: .seconds(20)) == .exited(0))
            }
        }
    }
}
