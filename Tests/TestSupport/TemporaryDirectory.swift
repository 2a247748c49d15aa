import Foundation

/// A fresh directory under /tmp, removed when the scope ends, whatever happens in it.
public struct TemporaryDirectory: Sendable {
    public let path: String

    /// A new empty directory; the caller removes it (prefer `withTemporaryDirectory`).
    public static func create(prefix: String = "vgw-test") throws -> TemporaryDirectory {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, let path = mkdtemp(base) else { return nil }
            return String(cString: path)
        }
        guard let made else {
            throw CocoaError(
                .fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "mkdtemp failed: errno \(errno)"])
        }
        return TemporaryDirectory(path: made)
    }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `body` with a new temporary directory and removes it afterwards, also when `body` throws.
public func withTemporaryDirectory<T>(
    prefix: String = "vgw-test", _ body: (TemporaryDirectory) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory.create(prefix: prefix)
    defer { directory.remove() }
    return try await body(directory)
}
