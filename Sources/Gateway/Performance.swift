import Broker
import Foundation
import Protocol
import ResourceControl

/// Traffic per provider id, as far as it is known; a provider missing from the answer is
/// reported `"traffic": null` (unknown, not zero).
public typealias TrafficSource = @Sendable () async -> [String: ProviderTraffic]

/// `perf.get`'s figures for one bundle's service (documented in docs/protocol.md).
public struct BundlePerformance: Codable, Sendable, Equatable {
    public var name: String
    public var state: String
    public var pid: Int32?
    public var restarts: Int
    /// CPU time used, ever (of the current cgroup, or of the running process group).
    public var cpuSeconds: Double?
    /// Percent of one CPU over the recent window (null until two samples exist).
    public var cpuPercent: Double?
    public var memoryBytes: UInt64?
    public var pids: Int?
    /// Where the figures come from: `cgroup`, `proc` (the service's process group in
    /// /proc, when there is no cgroup) or `none` (not running).
    public var source: String

    public func encode(to encoder: any Encoder) throws {
        // Unknown figures are `null`, not missing: a reader sees every field every time.
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(state, forKey: .state)
        try container.encode(pid, forKey: .pid)
        try container.encode(restarts, forKey: .restarts)
        try container.encode(cpuSeconds, forKey: .cpuSeconds)
        try container.encode(cpuPercent, forKey: .cpuPercent)
        try container.encode(memoryBytes, forKey: .memoryBytes)
        try container.encode(pids, forKey: .pids)
        try container.encode(source, forKey: .source)
    }
}

/// `perf.get`'s result: the VGW as a whole, then each of its bundles.
public struct ProviderPerformance: Codable, Sendable, Equatable {
    public var provider: String
    public var state: String
    public var sampledAt: Date
    /// The span the CPU percentages cover (null when there was no earlier sample).
    public var windowSeconds: Double?
    public var bundlesRunning: Int
    public var restarts: Int
    public var cpuSeconds: Double?
    public var cpuPercent: Double?
    public var memoryBytes: UInt64?
    public var pids: Int?
    public var source: String
    public var traffic: ProviderTraffic?
    public var bundles: [BundlePerformance]

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(provider, forKey: .provider)
        try container.encode(state, forKey: .state)
        try container.encode(sampledAt, forKey: .sampledAt)
        try container.encode(windowSeconds, forKey: .windowSeconds)
        try container.encode(bundlesRunning, forKey: .bundlesRunning)
        try container.encode(restarts, forKey: .restarts)
        try container.encode(cpuSeconds, forKey: .cpuSeconds)
        try container.encode(cpuPercent, forKey: .cpuPercent)
        try container.encode(memoryBytes, forKey: .memoryBytes)
        try container.encode(pids, forKey: .pids)
        try container.encode(source, forKey: .source)
        try container.encode(traffic, forKey: .traffic)
        try container.encode(bundles, forKey: .bundles)
    }
}

/// Recent CPU readings of one provider, for a CPU percentage over a recent window.
///
/// A percentage needs two readings of a cumulative counter some time apart. Reading only
/// when `perf.get` is called would give nothing on a first call and windows as long as the
/// gaps between callers; a background thread per service would cost more than it tells.
/// So: a small ring, filled by every `perf.get` and by one gateway-wide sampler every 5 s.
/// Every call then finds a reading at most 5 s old and older ones up to `window` back, and
/// the cost is a few file reads per provider every 5 s, with fixed memory.
struct PerfHistory {
    struct Sample {
        var at: ContinuousClock.Instant
        var provider: UInt64?
        var bundles: [String: UInt64]
    }

    static let capacity = 8
    static let window: Duration = .seconds(30)
    /// Shorter spans are too noisy to report (two calls in a row).
    static let minimumSpan: Duration = .milliseconds(500)

    private(set) var samples: [Sample] = []

    mutating func add(_ sample: Sample) {
        samples.append(sample)
        if samples.count > Self.capacity { samples.removeFirst(samples.count - Self.capacity) }
    }

    /// The oldest earlier sample within the window, if one exists.
    func baseline(for latest: Sample) -> Sample? {
        samples.first { latest.at - $0.at <= Self.window && latest.at - $0.at >= Self.minimumSpan }
    }

    /// Percent of one CPU between `base` and `latest` (over 100 with several CPUs busy);
    /// nil when either reading is missing or the counter went back (a new cgroup).
    static func percent(_ old: UInt64?, _ new: UInt64?, over span: Duration) -> Double? {
        guard let old, let new, new >= old else { return nil }
        let seconds = Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18
        guard seconds > 0 else { return nil }
        return (Double(new - old) / 1e9 / seconds * 100 * 10).rounded() / 10
    }
}

/// Usage of one service's process group read from /proc, for services without a cgroup
/// (rlimits only): CPU time of its members (and of the children they reaped), resident
/// memory, threads.
public enum ProcessGroupUsage {
    /// Usage summed over the live processes whose process group is `leader` (a service is
    /// started as the leader of its own group); nil when there is none.
    public static func read(group leader: pid_t) -> ResourceUsage? {
        let ticks = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        var cpuTicks: UInt64 = 0
        var memory: UInt64 = 0
        var threads = 0
        var found = false
        for entry in entries {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // After "pid (comm)": field 3 (state) is index 0, so field n is index n - 3.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 17, Int32(fields[2]) == leader else { continue }
            found = true
            for index in 11...14 { cpuTicks += UInt64(fields[index]) ?? 0 }
            threads += Int(fields[17]) ?? 1
            memory += residentBytes(pid) ?? 0
        }
        guard found else { return nil }
        return ResourceUsage(memoryBytes: memory, cpuNanoseconds: cpuTicks * 1_000_000_000 / ticks, pids: threads)
    }

    /// `VmRSS` of /proc/<pid>/status (kernel threads and zombies have none).
    private static func residentBytes(_ pid: pid_t) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        let kilobytes = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first
        return kilobytes.flatMap { UInt64($0) }.map { $0 * 1024 }
    }
}
