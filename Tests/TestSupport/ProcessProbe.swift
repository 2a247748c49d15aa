import Foundation

/// Whether processes the tests started are really gone, from /proc.
public enum ProcessProbe {
    /// Alive and not a zombie: an orphaned zombie still answers `kill(pid, 0)`, but it has
    /// exited all the same (and in a container without a reaping init it stays).
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !stat.contains(") Z ")
    }

    /// Polls (the kernel tells no one when a process it does not own dies), bounded.
    public static func waitUntilGone(_ pid: pid_t, within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while isAlive(pid) {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }
}
