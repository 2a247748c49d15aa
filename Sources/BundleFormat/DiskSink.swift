import Foundation
import Support

/// An open file descriptor, closed in deinit so that no error path leaks one.
final class FileDescriptor {
    let raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    deinit { close(raw) }
}

func posixError(_ what: String, _ path: String, _ number: Int32 = errno) -> VGWError {
    VGWError(.io, "\(what) \(path): \(String(cString: strerror(number)))")
}

/// Writes entries below one directory, resolving every path component with `openat` and
/// `O_NOFOLLOW`, so that nothing (not even a symlink planted by a racing process) can
/// redirect a write outside it.
final class DiskSink: EntrySink {
    private let root: FileDescriptor
    private var current: FileDescriptor?
    private var currentPath = ""

    init(root path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("cannot open", path) }
        root = FileDescriptor(fd)
    }

    func directory(_ components: [String]) throws {
        _ = try openDirectory(components[...])
    }

    func beginFile(_ components: [String], executable: Bool) throws {
        guard let name = components.last else { throw VGWError(.invalidBundle, "entry with an empty name") }
        let parent = try openDirectory(components.dropLast())
        let path = components.joined(separator: "/")
        let mode: mode_t = executable ? 0o755 : 0o644
        let fd = openat(parent.raw, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw posixError("cannot create", path) }
        let file = FileDescriptor(fd)
        // The umask must not decide the mode: set it exactly.
        guard fchmod(fd, mode) == 0 else { throw posixError("cannot set the mode of", path) }
        current = file
        currentPath = path
    }

    func write(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        guard let current, var next = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let written = Foundation.write(current.raw, next, left)
            if written < 0 {
                if errno == EINTR { continue }
                throw posixError("cannot write", currentPath)
            }
            left -= written
            next += written
        }
    }

    func endFile() throws {
        current = nil
    }

    /// Opens (creating as needed, mode 0755) the directory at `components` below the root.
    private func openDirectory(_ components: ArraySlice<String>) throws -> FileDescriptor {
        var directory = root
        var path = ""
        for component in components {
            path += path.isEmpty ? component : "/" + component
            let created = mkdirat(directory.raw, component, 0o755) == 0
            if !created && errno != EEXIST { throw posixError("cannot create directory", path) }
            let fd = openat(directory.raw, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw posixError("cannot open directory", path) }
            directory = FileDescriptor(fd)
            if created && fchmod(fd, 0o755) != 0 { throw posixError("cannot set the mode of", path) }
        }
        return directory
    }
}

/// Discards everything: `inspect` validates without writing.
final class NullSink: EntrySink {
    func directory(_ components: [String]) throws {}
    func beginFile(_ components: [String], executable: Bool) throws {}
    func write(_ bytes: UnsafeBufferPointer<UInt8>) throws {}
    func endFile() throws {}
}
