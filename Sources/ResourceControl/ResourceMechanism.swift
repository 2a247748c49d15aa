import Foundation
import Support

/// Limits of one provider VGW or one bundle. `nil` means "no limit of this kind".
public struct ResourceLimits: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Bytes of memory (cgroups: RAM, and swap is denied so the limit is real; rlimits: address space).
    public var memoryBytes: UInt64?
    /// A number of CPUs, e.g. 0.5 for half of one CPU. Only cgroups can enforce it.
    public var cpu: Double?
    /// Number of tasks (processes and threads) in the group.
    public var pids: Int?

    public init(memoryBytes: UInt64? = nil, cpu: Double? = nil, pids: Int? = nil) {
        self.memoryBytes = memoryBytes
        self.cpu = cpu
        self.pids = pids
    }

    public static let unlimited = ResourceLimits()

    public var description: String {
        var parts: [String] = []
        if let memoryBytes { parts.append("memory \(formatBytes(memoryBytes))") }
        if let cpu { parts.append("cpu \(cpu)") }
        if let pids { parts.append("pids \(pids)") }
        return parts.isEmpty ? "unlimited" : parts.joined(separator: ", ")
    }
}

/// "128 MiB" rather than "134217728", because operators read these in messages.
public func formatBytes(_ bytes: UInt64) -> String {
    let mib: UInt64 = 1 << 20
    let gib: UInt64 = 1 << 30
    if bytes >= gib && bytes % gib == 0 { return "\(bytes / gib) GiB" }
    if bytes >= mib && bytes % mib == 0 { return "\(bytes / mib) MiB" }
    if bytes >= mib { return String(format: "%.1f MiB", Double(bytes) / Double(mib)) }
    return "\(bytes) bytes"
}

/// How limits are enforced on this machine.
///
/// The paths are the directories below which the controller creates its root group. They are
/// the daemon's *own* cgroup in each hierarchy (from /proc/self/cgroup), so that the daemon's
/// groups nest inside whatever confines the daemon itself (a systemd service, a container)
/// instead of escaping it.
public enum ResourceMechanism: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The unified hierarchy. `root` must be delegated to us and hold no processes itself,
    /// because cgroup v2 allows controllers to be enabled only for groups without processes.
    case cgroupV2(root: String)
    /// One directory per v1 hierarchy; `nil` where that controller is missing or read-only.
    /// `cpuacct` is separate because it is often mounted apart from `cpu` (as on the build
    /// machine); it is only read, for CPU usage.
    case cgroupV1(memory: String?, cpu: String?, pids: String?, cpuacct: String? = nil)
    /// No writable cgroup: per-process rlimits given at spawn, which are much weaker.
    case rlimits

    public var description: String {
        switch self {
        case .cgroupV2(let root):
            return "cgroup v2 (\(root))"
        case .cgroupV1(let memory, let cpu, let pids, _):
            let names = [("memory", memory), ("cpu", cpu), ("pids", pids)].filter { $0.1 != nil }.map(\.0)
            return "cgroup v1 (\(names.joined(separator: ", ")))"
        case .rlimits:
            return "rlimits (no writable cgroup)"
        }
    }

    /// Which mechanism to use: a configuration value, so that an operator (or a test) can
    /// force the rlimit path, or insist on cgroups and fail loudly when they are unusable.
    public enum Choice: String, Sendable, Codable, CaseIterable {
        case auto
        case cgroupV2 = "cgroup-v2"
        case cgroupV1 = "cgroup-v1"
        case rlimits
    }

    /// Resolves a configured choice; a forced cgroup version that is not writable is an error
    /// rather than a silent downgrade, because the operator asked for real limits.
    public static func resolve(_ choice: Choice, preferredRoot: String? = nil) throws -> ResourceMechanism {
        switch choice {
        case .auto:
            return detect(preferredRoot: preferredRoot)
        case .rlimits:
            return .rlimits
        case .cgroupV2:
            guard let root = CgroupProbe.writableV2Root(preferredRoot: preferredRoot) else {
                throw VGWError(.resourceLimit, "cgroup v2 was requested but no writable, delegated v2 group was found")
            }
            return .cgroupV2(root: root)
        case .cgroupV1:
            guard let v1 = CgroupProbe.writableV1() else {
                throw VGWError(.resourceLimit, "cgroup v1 was requested but no v1 controller is writable")
            }
            return v1
        }
    }

    /// Probes what is really writable by creating and removing a test group: a mounted
    /// hierarchy says nothing about permissions (read-only bind mounts, not root, no delegation).
    ///
    /// - Parameter preferredRoot: for cgroup v2, the delegated directory to use (for example
    ///   "/sys/fs/cgroup/vgw.slice"); by default the daemon's own v2 group. v1 ignores it.
    public static func detect(preferredRoot: String? = nil) -> ResourceMechanism {
        if let root = CgroupProbe.writableV2Root(preferredRoot: preferredRoot) { return .cgroupV2(root: root) }
        if let v1 = CgroupProbe.writableV1() { return v1 }
        return .rlimits
    }
}

/// Reads /proc/self/mountinfo and /proc/self/cgroup to find where our groups may live.
enum CgroupProbe {
    static let v2Controllers = ["memory", "cpu", "pids"]

    struct Mount {
        var root: String
        var mountPoint: String
        var fsType: String
        var superOptions: [String]
    }

    static func mounts() -> [Mount] {
        guard let text = try? FileIO.read("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            guard let dash = fields.firstIndex(of: "-"), dash >= 5, fields.count >= dash + 4 else { return nil }
            return Mount(
                root: unescape(fields[3]), mountPoint: unescape(fields[4]), fsType: fields[dash + 1],
                superOptions: fields[dash + 3].split(separator: ",").map(String.init))
        }
    }

    /// mountinfo escapes spaces and a few others as octal (\040).
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
                let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Our own group per hierarchy: controller list ("memory", "cpu,cpuacct", "" for v2) to path.
    static func ownGroups() -> [(controllers: [String], path: String)] {
        guard let text = try? FileIO.read("/proc/self/cgroup") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { return nil }
            return (fields[1].split(separator: ",").map(String.init), String(fields[2]))
        }
    }

    /// The directory of `ownPath` inside a mount whose root may itself be a subtree.
    static func directory(of ownPath: String, in mount: Mount) -> String {
        var relative = ownPath
        if mount.root != "/" && relative.hasPrefix(mount.root) { relative.removeFirst(mount.root.count) }
        if relative == "/" || relative.isEmpty { return mount.mountPoint }
        return mount.mountPoint + (relative.hasPrefix("/") ? "" : "/") + relative
    }

    /// Whether we can create and remove a group here.
    static func canCreateGroup(in directory: String) -> Bool {
        let probe = directory + "/.vgw-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(probe, 0o755) == 0 else { return false }
        return rmdir(probe) == 0
    }

    static func writableV2Root(preferredRoot: String?) -> String? {
        var candidates: [String] = []
        if let preferredRoot {
            candidates.append(preferredRoot)
        } else {
            let own = ownGroups().first { $0.controllers.isEmpty }?.path ?? "/"
            for mount in mounts() where mount.fsType == "cgroup2" {
                candidates.append(directory(of: own, in: mount))
            }
        }
        for candidate in candidates {
            // A v2 hierarchy whose controllers are all bound to v1 (as here) limits nothing.
            guard let available = try? FileIO.read(candidate + "/cgroup.controllers") else { continue }
            let names = available.split(whereSeparator: \.isWhitespace).map(String.init)
            guard v2Controllers.contains(where: names.contains), canCreateGroup(in: candidate) else { continue }
            return candidate
        }
        return nil
    }

    static func writableV1() -> ResourceMechanism? {
        let mounts = mounts().filter { $0.fsType == "cgroup" }
        let own = ownGroups()
        func base(_ controller: String) -> String? {
            guard let mount = mounts.first(where: { $0.superOptions.contains(controller) }) else { return nil }
            let ownPath = own.first { $0.controllers.contains(controller) }?.path ?? "/"
            // Prefer nesting under our own group; the hierarchy root is the fallback when our
            // group is not writable to us (no delegation) but the root is.
            for candidate in [directory(of: ownPath, in: mount), mount.mountPoint] where canCreateGroup(in: candidate) {
                return candidate
            }
            return nil
        }
        let memory = base("memory")
        let cpu = base("cpu")
        let pids = base("pids")
        let cpuacct = base("cpuacct")
        guard memory != nil || cpu != nil || pids != nil else { return nil }
        return .cgroupV1(memory: memory, cpu: cpu, pids: pids, cpuacct: cpuacct)
    }
}

/// Small, errno-preserving file access for cgroupfs, where every write is one syscall with a
/// meaning (Foundation's writers may truncate, rename or buffer).
enum FileIO {
    static func read(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw error("cannot read \(path)") }
        defer { close(fd) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw error("cannot read \(path)") }
            if count == 0 { break }
            data.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func write(_ path: String, _ value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw error("cannot open \(path)") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw error("cannot write '\(value)' to \(path)") }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func error(_ message: String) -> VGWError {
        VGWError(.resourceLimit, "\(message): \(String(cString: strerror(errno)))")
    }
}
