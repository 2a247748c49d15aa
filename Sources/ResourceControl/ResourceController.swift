import Foundation
import Supervisor
import Support
import Synchronization

/// One controller hierarchy a group lives in. v2 has a single one; v1 one per controller.
enum Hierarchy: String, Sendable, Hashable, CaseIterable {
    case unified, memory, cpu, cpuacct, pids
}

/// A group of processes with limits: a provider VGW (`["acme"]`) or one of its bundles
/// (`["acme", "thermostat"]`). A value: it names directories, it does not own them.
public struct ResourceGroup: Sendable, Equatable {
    public let path: [String]
    public let limits: ResourceLimits
    /// The `cgroup.procs` files a process must be written into to join the group, one per
    /// hierarchy; empty for rlimits. Exposed so that a C-level spawner can write them in the
    /// child between fork and exec, which closes the attach race completely.
    public let procsFiles: [String]
    /// Limits to put in `SpawnRequest.limits`: the rlimit fallback under `.rlimits` (the
    /// tightest of this group and its ancestors), empty under cgroups.
    public let spawnLimits: [ResourceLimit]
    /// Directory of the group per hierarchy.
    let directories: [Hierarchy: String]

    /// Moves a running process into the group (every hierarchy under v1).
    ///
    /// Attaching after spawn leaves a window: the program has already exec'd and may fork
    /// before this write, and such a child stays outside the group. Use `confine(_:)` to
    /// close it. Does nothing under `.rlimits`.
    public func attach(pid: pid_t) throws {
        for file in procsFiles { try FileIO.write(file, "\(pid)\n") }
    }

    /// The request rewritten so that the child joins the group *before* the program starts:
    /// `/bin/sh` writes its own pid (`$$`, which survives `exec`) into every `cgroup.procs`
    /// file and then execs the program, so the program runs, and forks, only inside the group.
    ///
    /// The price: a missing executable is reported as exit code 127 after spawn rather than
    /// as a spawn error, and a failed attach as exit code 126. Under `.rlimits` the request
    /// only gets `spawnLimits` added.
    public func confine(_ request: SpawnRequest) -> SpawnRequest {
        var confined = request
        confined.limits += spawnLimits
        guard !procsFiles.isEmpty else { return confined }
        let script = """
            while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"
            """
        confined.executable = "/bin/sh"
        confined.arguments =
            ["-c", script, "vgw-confine"] + procsFiles + ["--", request.executable] + request.arguments
        return confined
    }
}

/// What a group uses now. `nil` where the mechanism cannot tell (everything under rlimits).
public struct ResourceUsage: Sendable, Equatable, Codable {
    /// Current memory charged to the group (page cache included).
    public var memoryBytes: UInt64?
    /// The highest `memoryBytes` seen (v1 always; v2 from kernel 5.19).
    public var memoryPeakBytes: UInt64?
    /// CPU time used by all processes of the group, ever.
    public var cpuNanoseconds: UInt64?
    /// Tasks (processes and their threads) in the group now.
    public var pids: Int?
    /// OOM kills in this group: v1 the `oom_kill` line of memory.oom_control (or
    /// memory.failcnt on kernels before 4.13, which counts limit hits, not kills); v2 the
    /// `oom_kill` line of memory.events.
    public var oomKills: UInt64?
    /// The OOM kill counter of this group and of every enclosing group, by path joined with
    /// "/" ("" is the controller's root). A bundle can be killed because its *provider's*
    /// limit was hit, which is counted on the provider's group only.
    public var oomKillsByGroup: [String: UInt64]
    /// How often the memory limit of this group and of every enclosing group was hit (v1
    /// memory.failcnt, v2 the local "max" event), keyed like `oomKillsByGroup`. The OOM kill
    /// may be counted on the victim's group, while the limit that was hit is the ancestor's.
    public var memoryLimitHitsByGroup: [String: UInt64]

    public init(
        memoryBytes: UInt64? = nil, memoryPeakBytes: UInt64? = nil, cpuNanoseconds: UInt64? = nil, pids: Int? = nil,
        oomKills: UInt64? = nil, oomKillsByGroup: [String: UInt64] = [:], memoryLimitHitsByGroup: [String: UInt64] = [:]
    ) {
        self.memoryBytes = memoryBytes
        self.memoryPeakBytes = memoryPeakBytes
        self.cpuNanoseconds = cpuNanoseconds
        self.pids = pids
        self.oomKills = oomKills
        self.oomKillsByGroup = oomKillsByGroup
        self.memoryLimitHitsByGroup = memoryLimitHitsByGroup
    }
}

/// The group whose memory limit the OOM killer enforced.
public struct MemoryLimitExceeded: Sendable, Equatable, CustomStringConvertible {
    /// The group whose limit was hit: the bundle itself or an enclosing provider.
    public var path: [String]
    public var limitBytes: UInt64?

    /// "memory limit (128 MiB) exceeded", naming the enclosing group when it was not the
    /// process's own, because that is where the operator must raise the limit.
    public func description(for group: [String]) -> String {
        let limit = limitBytes.map { " (\(formatBytes($0)))" } ?? ""
        let whose = path == group ? "" : " of \(path.isEmpty ? "all groups" : path.joined(separator: "/"))"
        return "memory limit\(limit)\(whose) exceeded"
    }

    public var description: String { description(for: path) }
}

/// Creates, limits, measures and removes the groups of the daemon, all below one root group
/// (`rootName`, "vgw" by default; tests use a unique one so that runs never collide).
///
/// Nested paths are nested groups, so a provider's limit caps the sum of its bundles.
/// Methods block briefly on cgroupfs; `removeGroup` blocks up to its timeout.
public final class ResourceController: Sendable {
    public let mechanism: ResourceMechanism
    public let rootName: String
    /// Limits per group path, for the rlimit fallback (which must apply the tightest limit of
    /// the ancestors itself) and for naming the limit in OOM messages.
    private let known = Mutex<[[String]: ResourceLimits]>([:])

    static let cpuPeriodMicroseconds = 100_000

    public init(rootName: String = "vgw", mechanism: ResourceMechanism) throws {
        try Self.validate(rootName)
        self.rootName = rootName
        self.mechanism = mechanism
    }

    /// Detects (or forces) the mechanism; see `ResourceMechanism.resolve`.
    public convenience init(
        rootName: String = "vgw", choice: ResourceMechanism.Choice = .auto, preferredRoot: String? = nil
    ) throws {
        try self.init(rootName: rootName, mechanism: ResourceMechanism.resolve(choice, preferredRoot: preferredRoot))
    }

    // MARK: Groups

    /// Creates the group and any missing ancestors (ancestors get no limits of their own
    /// unless they were ensured before), then writes `limits` to the group.
    /// Calling it again for an existing group updates its limits.
    public func ensureGroup(path: [String], limits: ResourceLimits) throws -> ResourceGroup {
        guard !path.isEmpty else { throw VGWError(.invalidArgument, "a resource group path must not be empty") }
        for name in path { try Self.validate(name) }
        let bases = baseDirectories()
        for (hierarchy, base) in bases {
            var directory = base
            for name in [rootName] + path {
                if hierarchy == .unified { try enableV2Controllers(in: directory, isBase: directory == base) }
                directory += "/" + name
                if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                    throw FileIO.error("cannot create group \(directory)")
                }
                if hierarchy == .memory && name == rootName { useMemoryHierarchy(directory) }
            }
        }
        let group = makeGroup(path: path, limits: limits)
        try write(limits, to: group)
        known.withLock { $0[path] = limits }
        return group
    }

    /// The group value for an existing path (after `ensureGroup`), e.g. to read its usage.
    public func group(path: [String]) -> ResourceGroup? {
        guard let limits = known.withLock({ $0[path] }) else { return nil }
        return makeGroup(path: path, limits: limits)
    }

    private func makeGroup(path: [String], limits: ResourceLimits) -> ResourceGroup {
        let directories = directories(for: path)
        let procs = Set(directories.values).sorted().map { $0 + "/cgroup.procs" }
        var spawnLimits: [ResourceLimit] = []
        if case .rlimits = mechanism { spawnLimits = rlimitFallback(for: effectiveLimits(path: path, own: limits)) }
        return ResourceGroup(
            path: path, limits: limits, procsFiles: procs, spawnLimits: spawnLimits, directories: directories)
    }

    /// The tightest of the group's and its known ancestors' limits: rlimits have no nesting.
    private func effectiveLimits(path: [String], own: ResourceLimits) -> ResourceLimits {
        let all =
            known.withLock { known in
                (1..<max(path.count, 1)).compactMap { known[Array(path.prefix($0))] }
            } + [own]
        func tightest<T: Comparable>(_ values: [T?]) -> T? { values.compactMap { $0 }.min() }
        return ResourceLimits(
            memoryBytes: tightest(all.map(\.memoryBytes)), cpu: tightest(all.map(\.cpu)),
            pids: tightest(all.map(\.pids)))
    }

    /// Maps limits to rlimits, for `.rlimits`. This is a weak substitute:
    /// - memory becomes RLIMIT_AS, virtual address space per process: it counts reservations
    ///   that are never touched (runtimes that map large heaps fail early) and is not shared
    ///   among the processes of a group;
    /// - pids becomes RLIMIT_NPROC, which counts *all* processes of the user (all bundles,
    ///   and everything else running as that user), so it only stops a runaway fork bomb;
    /// - cpu has no rlimit equivalent (RLIMIT_CPU kills after a total time, it does not share
    ///   a CPU), so it is not enforced at all.
    public func rlimitFallback(for limits: ResourceLimits) -> [ResourceLimit] {
        var result: [ResourceLimit] = []
        if let memory = limits.memoryBytes { result.append(ResourceLimit(.addressSpace, memory)) }
        if let pids = limits.pids { result.append(ResourceLimit(.processes, UInt64(max(pids, 1)))) }
        return result
    }

    // MARK: Limits

    private func write(_ limits: ResourceLimits, to group: ResourceGroup) throws {
        let directories = group.directories
        try checkEnforceable(limits, directories)
        if let unified = directories[.unified] {
            try writeV2(limits, unified)
        }
        if let memory = directories[.memory] { try writeV1Memory(limits.memoryBytes, memory) }
        if let cpu = directories[.cpu] {
            // v1 rejects (EINVAL) a child quota above its parent's, so a bundle asking for more
            // than its provider gets the provider's; v2 accepts it and the parent caps anyway.
            // Lowering a provider below an existing bundle's quota still fails on v1: lower the
            // bundles first.
            let capped = effectiveLimits(path: group.path, own: limits).cpu
            let quota = capped.map { String(max(1000, Int($0 * Double(Self.cpuPeriodMicroseconds)))) } ?? "-1"
            try FileIO.write(cpu + "/cpu.cfs_period_us", "\(Self.cpuPeriodMicroseconds)")
            try FileIO.write(cpu + "/cpu.cfs_quota_us", quota)
            // Shares weigh the group against its siblings when the CPU is contended below the quota.
            let shares = limits.cpu.map { max(2, Int($0 * 1024)) } ?? 1024
            try FileIO.write(cpu + "/cpu.shares", "\(shares)")
        }
        if let pids = directories[.pids] {
            try FileIO.write(pids + "/pids.max", limits.pids.map { "\(max($0, 1))" } ?? "max")
        }
    }

    /// A limit that cannot be enforced is an error, not a silent no-op: the operator believes
    /// the limit holds. (Force `.rlimits` to accept the weaker substitute instead.)
    private func checkEnforceable(_ limits: ResourceLimits, _ directories: [Hierarchy: String]) throws {
        if case .rlimits = mechanism { return }
        let available: Set<String>
        if let unified = directories[.unified] {
            available = v2Controllers(unified)
        } else {
            available = Set(directories.keys.map(\.rawValue))
        }
        let missing = [
            ("memory", limits.memoryBytes != nil), ("cpu", limits.cpu != nil), ("pids", limits.pids != nil),
        ].filter { $0.1 && !available.contains($0.0) }.map(\.0)
        guard missing.isEmpty else {
            throw VGWError(
                .resourceLimit,
                "cannot enforce a \(missing.joined(separator: ", ")) limit: controller not available with \(mechanism)")
        }
    }

    /// v1 requires memsw >= memory at every moment, so the order of the two writes depends on
    /// whether the limit goes up or down. memsw exists only with swap accounting.
    private func writeV1Memory(_ bytes: UInt64?, _ directory: String) throws {
        let value = bytes.map(String.init) ?? "-1"
        let memsw = directory + "/memory.memsw.limit_in_bytes"
        guard FileIO.exists(memsw) else {
            try FileIO.write(directory + "/memory.limit_in_bytes", value)
            return
        }
        let current = (try? FileIO.read(directory + "/memory.limit_in_bytes")).flatMap {
            UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let raising = bytes == nil || current.map { bytes ?? 0 > $0 } ?? true
        if raising {
            try FileIO.write(memsw, value)
            try FileIO.write(directory + "/memory.limit_in_bytes", value)
        } else {
            try FileIO.write(directory + "/memory.limit_in_bytes", value)
            try FileIO.write(memsw, value)
        }
    }

    private func writeV2(_ limits: ResourceLimits, _ directory: String) throws {
        let available = v2Controllers(directory)
        if available.contains("memory") {
            try FileIO.write(directory + "/memory.max", limits.memoryBytes.map(String.init) ?? "max")
            // Without this, a memory limit only moves the excess to swap.
            if FileIO.exists(directory + "/memory.swap.max") {
                try FileIO.write(directory + "/memory.swap.max", limits.memoryBytes == nil ? "max" : "0")
            }
        }
        if available.contains("cpu") {
            let quota = limits.cpu.map { String(max(1000, Int($0 * Double(Self.cpuPeriodMicroseconds)))) } ?? "max"
            try FileIO.write(directory + "/cpu.max", "\(quota) \(Self.cpuPeriodMicroseconds)")
        }
        if available.contains("pids") {
            try FileIO.write(directory + "/pids.max", limits.pids.map { "\(max($0, 1))" } ?? "max")
        }
    }

    /// The controllers the parent made available to this v2 group.
    private func v2Controllers(_ directory: String) -> Set<String> {
        let text = (try? FileIO.read(directory + "/cgroup.controllers")) ?? ""
        return Set(text.split(whereSeparator: \.isWhitespace).map(String.init))
    }

    /// v2 limits of a child work only with the controller enabled in the parent's subtree_control.
    private func enableV2Controllers(in directory: String, isBase: Bool) throws {
        let wanted = CgroupProbe.v2Controllers.filter(v2Controllers(directory).contains)
        let enabled = Set(
            ((try? FileIO.read(directory + "/cgroup.subtree_control")) ?? "").split(whereSeparator: \.isWhitespace)
                .map(String.init))
        let missing = wanted.filter { !enabled.contains($0) }
        guard !missing.isEmpty else { return }
        do {
            try FileIO.write(directory + "/cgroup.subtree_control", missing.map { "+" + $0 }.joined(separator: " "))
        } catch {
            let hint =
                isBase
                ? "; the cgroup v2 root must be delegated and hold no processes (move the daemon to a leaf group)"
                : ""
            throw VGWError(.resourceLimit, "cannot enable \(missing) in \(directory)\(hint)", cause: error as? VGWError)
        }
    }

    /// v1 memory limits only cover descendants with use_hierarchy set; it can be set only on a
    /// group without children, i.e. right after creating our root, and is inherited below it.
    private func useMemoryHierarchy(_ directory: String) {
        let file = directory + "/memory.use_hierarchy"
        if (try? FileIO.read(file))?.hasPrefix("1") == false { try? FileIO.write(file, "1") }
    }

    // MARK: Usage

    /// Reads the current usage of a group; missing files give `nil`, not an error, because
    /// counters differ between kernels.
    public func usage(of group: ResourceGroup) -> ResourceUsage {
        var usage = ResourceUsage()
        let directories = group.directories
        if let unified = directories[.unified] {
            usage.memoryBytes = readNumber(unified + "/memory.current")
            usage.memoryPeakBytes = readNumber(unified + "/memory.peak")
            usage.cpuNanoseconds = readKeyed(unified + "/cpu.stat", "usage_usec").map { $0 * 1000 }
            usage.pids = readNumber(unified + "/pids.current").map { Int($0) } ?? countProcs(unified)
        }
        if let memory = directories[.memory] {
            usage.memoryBytes = readNumber(memory + "/memory.usage_in_bytes")
            usage.memoryPeakBytes = readNumber(memory + "/memory.max_usage_in_bytes")
        }
        if let cpuacct = directories[.cpuacct] {
            usage.cpuNanoseconds = readNumber(cpuacct + "/cpuacct.usage")
        }
        if let pids = directories[.pids] {
            usage.pids = readNumber(pids + "/pids.current").map { Int($0) }
        } else if usage.pids == nil, let any = directories.values.sorted().first {
            usage.pids = countProcs(any)
        }
        for depth in 0...group.path.count {
            let prefix = Array(group.path.prefix(depth))
            let key = prefix.joined(separator: "/")
            usage.oomKillsByGroup[key] = oomKills(prefix)
            usage.memoryLimitHitsByGroup[key] = memoryLimitHits(prefix)
        }
        usage.oomKills = usage.oomKillsByGroup[group.path.joined(separator: "/")]
        return usage
    }

    private func oomKills(_ path: [String]) -> UInt64? {
        let directories = directories(for: path)
        if let unified = directories[.unified] { return readKeyed(unified + "/memory.events", "oom_kill") }
        if let memory = directories[.memory] {
            return readKeyed(memory + "/memory.oom_control", "oom_kill") ?? readNumber(memory + "/memory.failcnt")
        }
        return nil
    }

    private func memoryLimitHits(_ path: [String]) -> UInt64? {
        let directories = directories(for: path)
        if let unified = directories[.unified] {
            // memory.events propagates to ancestors; the local file says whose limit it was.
            return readKeyed(unified + "/memory.events.local", "max") ?? readKeyed(unified + "/memory.events", "max")
        }
        if let memory = directories[.memory] { return readNumber(memory + "/memory.failcnt") }
        return nil
    }

    /// Whether the OOM killer acted in this group or an enclosing one since `before`, and if so
    /// whose limit it enforced: the innermost group with a memory limit that was hit since,
    /// else the innermost group with a memory limit, else the group where the kill was counted.
    /// Pair it with the exit status: a counter can also rise because a sibling was killed, so
    /// only a SIGKILLed process should be reported as OOM-killed.
    public func memoryLimitExceeded(in group: ResourceGroup, since before: ResourceUsage) -> MemoryLimitExceeded? {
        let now = usage(of: group)
        let chain = stride(from: group.path.count, through: 0, by: -1).map { Array(group.path.prefix($0)) }
        func rose(_ prefix: [String], _ counters: KeyPath<ResourceUsage, [String: UInt64]>) -> Bool {
            let key = prefix.joined(separator: "/")
            guard let after = now[keyPath: counters][key] else { return false }
            return after > before[keyPath: counters][key] ?? 0
        }
        guard let killedIn = chain.first(where: { rose($0, \.oomKillsByGroup) }) else { return nil }
        let limits = known.withLock { known in chain.map { ($0, known[$0]?.memoryBytes) } }
        let limited = limits.filter { $0.1 != nil }
        let hit = limited.first { rose($0.0, \.memoryLimitHitsByGroup) } ?? limited.first
        guard let (path, limit) = hit else { return MemoryLimitExceeded(path: killedIn, limitBytes: nil) }
        return MemoryLimitExceeded(path: path, limitBytes: limit)
    }

    /// Whether the OOM killer acted on this group or an enclosing one since `before`.
    public func wasOOMKilled(_ group: ResourceGroup, since before: ResourceUsage) -> Bool {
        memoryLimitExceeded(in: group, since: before) != nil
    }

    /// "killed: memory limit (128 MiB) exceeded" for a SIGKILL the OOM killer sent, else the
    /// status as usual ("exit code 1", "killed by SIGTERM").
    public func exitReason(_ status: ExitStatus, group: ResourceGroup, since before: ResourceUsage) -> String {
        if status == .signaled(SIGKILL), let exceeded = memoryLimitExceeded(in: group, since: before) {
            return "killed: \(exceeded.description(for: group.path))"
        }
        return status.description
    }

    // MARK: Removal

    /// Kills whatever still runs in the group and its descendants, waits (up to `timeout`)
    /// until they are gone, and removes the directories children-first. Missing groups are fine.
    ///
    /// Uses cgroup.kill on v2 when the kernel has it (atomic against forks); otherwise SIGKILLs
    /// each listed pid and repeats, because a fork bomb forks between reading and killing.
    public func removeGroup(path: [String], timeout: Duration = .seconds(5)) throws {
        for name in path { try Self.validate(name) }
        defer { known.withLock { $0 = $0.filter { !$0.key.starts(with: path) } } }
        let deadline = ContinuousClock.now + timeout
        let roots = directories(for: path).values.filter(FileIO.exists)
        guard !roots.isEmpty else { return }
        let me = getpid()
        while true {
            let pids = Set(roots.flatMap { subtree($0) }.flatMap { procs($0) }).subtracting([me])
            if pids.isEmpty { break }
            guard ContinuousClock.now < deadline else {
                throw VGWError(.timeout, "processes \(pids.sorted()) of group \(path) did not exit")
            }
            let killFiles = roots.map { $0 + "/cgroup.kill" }.filter(FileIO.exists)
            if !killFiles.isEmpty {
                for file in killFiles { try? FileIO.write(file, "1") }
            } else {
                for pid in pids { kill(pid, SIGKILL) }
            }
            pause()
        }
        for root in roots {
            for directory in subtree(root).reversed() {
                while rmdir(directory) != 0 && errno != ENOENT {
                    // A dying process can keep a group busy for a moment after leaving cgroup.procs.
                    guard errno == EBUSY, ContinuousClock.now < deadline else {
                        throw FileIO.error("cannot remove group \(directory)")
                    }
                    pause()
                }
            }
        }
    }

    /// Removes the root group and everything below it: for shutdown and tests.
    public func removeAll(timeout: Duration = .seconds(5)) throws {
        try removeGroup(path: [], timeout: timeout)
    }

    /// Polling interval while waiting for processes to die: there is no portable event for
    /// "group empty" (v2 has cgroup.events, v1 only a release agent).
    private func pause() { usleep(5000) }

    // MARK: Paths

    private func baseDirectories() -> [Hierarchy: String] {
        switch mechanism {
        case .cgroupV2(let root):
            return [.unified: root]
        case .cgroupV1(let memory, let cpu, let pids, let cpuacct):
            var bases: [Hierarchy: String] = [:]
            bases[.memory] = memory
            bases[.cpu] = cpu
            bases[.pids] = pids
            // When cpu and cpuacct are co-mounted, the cpu group already is the cpuacct group.
            bases[.cpuacct] = cpuacct
            return bases
        case .rlimits:
            return [:]
        }
    }

    /// The group's directories; path [] is the root group.
    private func directories(for path: [String]) -> [Hierarchy: String] {
        baseDirectories().mapValues { ([$0, rootName] + path).joined(separator: "/") }
    }

    /// The directory and all directories below it, parents before children.
    private func subtree(_ directory: String) -> [String] {
        guard FileIO.exists(directory) else { return [] }
        var result = [directory]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for entry in entries.sorted() {
            var isDirectory: ObjCBool = false
            let child = directory + "/" + entry
            if FileManager.default.fileExists(atPath: child, isDirectory: &isDirectory), isDirectory.boolValue {
                result += subtree(child)
            }
        }
        return result
    }

    private func procs(_ directory: String) -> [pid_t] {
        ((try? FileIO.read(directory + "/cgroup.procs")) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    private func countProcs(_ directory: String) -> Int? {
        FileIO.exists(directory + "/cgroup.procs") ? procs(directory).count : nil
    }

    private func readNumber(_ file: String) -> UInt64? {
        (try? FileIO.read(file)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// A "key value" line of a flat-keyed file (memory.events, cpu.stat, memory.oom_control).
    private func readKeyed(_ file: String, _ key: String) -> UInt64? {
        guard let text = try? FileIO.read(file) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2 && fields[0] == key { return UInt64(fields[1]) }
        }
        return nil
    }

    /// Group names become directory names: nothing that could escape the tree or clash with
    /// cgroupfs control files (which contain a dot after the controller name).
    static func validate(_ name: String) throws {
        let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        guard !name.isEmpty, name.count <= 64, allowed else {
            throw VGWError(.invalidArgument, "invalid resource group name '\(name)': use letters, digits, - and _")
        }
    }
}
