import Foundation

/// Size-bounded service logs. The child appends (O_APPEND) to its file directly, so the
/// supervisor never sits in the data path; when a file outgrows its bound, its content
/// moves to `<file>.1` and the file is truncated in place (what logrotate calls
/// copytruncate: the child's descriptor stays valid and keeps appending at the new end).
public enum ServiceLogs {
    public static func trim(_ path: String, maxBytes: Int) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = attributes[.size] as? Int, size > maxBytes
        else { return }
        guard let data = FileManager.default.contents(atPath: path) else { return }
        // Keep the newer half in the rotated file so `tail` still has context after a trim.
        let keep = data.suffix(maxBytes / 2)
        try? keep.write(to: URL(fileURLWithPath: path + ".1"))
        truncate(path, 0)
    }

    /// The last `lines` lines across the rotated file and the current one.
    public static func tail(_ path: String, lines: Int) -> String {
        let old = FileManager.default.contents(atPath: path + ".1") ?? Data()
        let current = FileManager.default.contents(atPath: path) ?? Data()
        let text = String(decoding: old + current, as: UTF8.self)
        var all = text.split(separator: "\n", omittingEmptySubsequences: false)
        if all.last == "" { all.removeLast() }
        return all.suffix(max(0, lines)).joined(separator: "\n")
    }
}
