import Foundation

/// What the kernel says about a process: /proc/<pid>/status and /proc/<pid>/stat.
enum ProcStats {
    /// VmRSS in KiB, nil when the process is gone.
    static func rssKiB(_ pid: pid_t) -> Int? { field(pid, file: "status", "VmRSS:") }

    /// RssAnon (private heap and stacks) in KiB.
    static func anonymousKiB(_ pid: pid_t) -> Int? { field(pid, file: "status", "RssAnon:") }

    /// RssFile (mapped files: the Swift runtime and Foundation, shared with other processes) in KiB.
    static func fileKiB(_ pid: pid_t) -> Int? { field(pid, file: "status", "RssFile:") }

    /// Bytes passed to write(2) and friends so far (/proc/<pid>/io wchar).
    static func writtenBytes(_ pid: pid_t) -> Int? { field(pid, file: "io", "wchar:") }

    private static func field(_ pid: pid_t, file: String, _ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/\(file)", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    /// The fields after the command name in /proc/<pid>/stat (field 3 is index 0).
    private static func statFields(_ pid: pid_t) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// utime + stime in clock ticks.
    static func cpuTicks(_ pid: pid_t) -> Int? {
        guard let fields = statFields(pid), fields.count > 12 else { return nil }
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func parent(_ pid: pid_t) -> pid_t? {
        guard let fields = statFields(pid), fields.count > 1 else { return nil }
        return pid_t(fields[1])
    }

    static func command(_ pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    static func allPids() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    /// Every live descendant of `root` (children, grandchildren, ...).
    static func descendants(of root: pid_t) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for pid in allPids() {
            if let parent = parent(pid) { children[parent, default: []].append(pid) }
        }
        var result: [pid_t] = []
        var queue = children[root] ?? []
        while let pid = queue.popLast() {
            result.append(pid)
            queue.append(contentsOf: children[pid] ?? [])
        }
        return result
    }

    /// The direct child of `parent` whose command is `name`.
    static func child(of parent: pid_t, named name: String) -> pid_t? {
        allPids().first { self.parent($0) == parent && command($0) == name }
    }
}

/// Monotonic nanoseconds.
enum Clock {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func seconds(since start: UInt64) -> Double { Double(now() - start) / 1e9 }
}

/// Latency samples in nanoseconds.
struct Samples {
    var values: [UInt64] = []

    mutating func add(_ nanoseconds: UInt64) { values.append(nanoseconds) }

    /// The `q` quantile (0...1) in milliseconds, nearest rank.
    func percentileMs(_ q: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))
        return Double(sorted[rank]) / 1e6
    }

    var p50: Double { percentileMs(0.5) }
    var p99: Double { percentileMs(0.99) }
    var maxMs: Double { Double(values.max() ?? 0) / 1e6 }
}
