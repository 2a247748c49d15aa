import Foundation
import Support

/// Bundle archives: gzip-compressed tar files holding `manifest.json` and the service's files.
public enum BundleArchive {
    /// Extracts a bundle into `directory`, which must be absent or empty, and returns its manifest.
    ///
    /// Everything is written to a temporary sibling directory that is renamed into place only
    /// when the whole archive proved valid; on any error it is removed, so nothing is ever
    /// half-installed.
    public static func extract(
        archive: [UInt8], into directory: String, limits: ExtractionLimits = ExtractionLimits()
    ) throws -> BundleManifest {
        let destination = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        try checkDestination(destination)
        try checkCompressedSize(archive, limits)
        let url = URL(fileURLWithPath: destination)
        let temporary = try makeTemporaryDirectory(
            in: url.deletingLastPathComponent().path, base: url.lastPathComponent)
        do {
            let manifest = try read(archive, limits: limits, sink: try DiskSink(root: temporary))
            guard chmod(temporary, 0o755) == 0 else { throw posixError("cannot set the mode of", temporary) }
            guard rename(temporary, destination) == 0 else { throw posixError("cannot move bundle to", destination) }
            return manifest
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// Validates a bundle exactly as `extract` does, without writing anything.
    public static func inspect(archive: [UInt8], limits: ExtractionLimits = ExtractionLimits()) throws
        -> BundleManifest
    {
        try checkCompressedSize(archive, limits)
        return try read(archive, limits: limits, sink: NullSink())
    }

    /// Packs a bundle directory into a deterministic tar.gz: sorted entries, owner 0, time 0,
    /// modes reduced to 0644/0755, so that the same tree always gives the same bytes.
    public static func pack(directory: String) throws -> [UInt8] {
        var writer = TarWriter()
        var files: [String: [UInt8]] = [:]
        try walk(directory, relative: [], writer: &writer, files: &files)
        guard let manifestBytes = files[TarReader.manifestName] else {
            throw VGWError(.invalidBundle, "pack: \(directory) has no manifest.json")
        }
        let manifest = try BundleManifest.decode(manifestBytes)
        guard files[manifest.command] != nil else {
            throw VGWError(.invalidBundle, "pack: command \(manifest.command) is not a file in \(directory)")
        }
        writer.addEndMarker()
        return try writer.gzipped()
    }

    /// Streams the archive through inflate and the tar parser, enforcing every limit as it goes.
    private static func read(_ archive: [UInt8], limits: ExtractionLimits, sink: EntrySink) throws
        -> BundleManifest
    {
        let reader = TarReader(sink: sink, limits: limits)
        var total = 0
        try Inflater().inflate(archive) { chunk, consumed in
            total += chunk.count
            guard total <= limits.maxUncompressedBytes else {
                throw VGWError(.tooLarge, "archive: more than \(limits.maxUncompressedBytes) bytes uncompressed")
            }
            if total > ExtractionLimits.ratioGraceBytes && total / max(consumed, 1) > limits.maxCompressionRatio {
                throw VGWError(
                    .tooLarge, "archive: compression ratio over \(limits.maxCompressionRatio):1 (decompression bomb)")
            }
            try reader.consume(chunk)
        }
        try reader.finish()
        guard let manifestBytes = reader.manifestBytes else {
            throw VGWError(.invalidBundle, "archive: no manifest.json at the root")
        }
        let manifest = try BundleManifest.decode(manifestBytes)
        guard reader.isFile(manifest.command) else {
            throw VGWError(.invalidBundle, "manifest: command \(manifest.command) is not a file in the archive")
        }
        return manifest
    }

    private static func checkCompressedSize(_ archive: [UInt8], _ limits: ExtractionLimits) throws {
        guard archive.count <= limits.maxCompressedBytes else {
            throw VGWError(.tooLarge, "archive: larger than \(limits.maxCompressedBytes) bytes")
        }
    }

    /// The destination may be absent or an empty directory (which the rename then replaces).
    private static func checkDestination(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw posixError("cannot inspect", path)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw VGWError(.alreadyExists, "destination \(path) exists and is not a directory")
        }
        let contents = try FileManager.default.contentsOfDirectory(atPath: path)
        guard contents.isEmpty else { throw VGWError(.alreadyExists, "destination \(path) is not empty") }
    }

    private static func makeTemporaryDirectory(in parent: String, base: String) throws -> String {
        var template = Array("\(parent)/.\(base).partial-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let start = buffer.baseAddress, let path = mkdtemp(start) else { return nil }
            return String(cString: path)
        }
        guard let made else { throw posixError("cannot create a temporary directory in", parent) }
        return made
    }

    /// Adds `relative` (below `root`) to the archive in sorted order, refusing anything that
    /// `extract` would refuse, so that a packed bundle always installs.
    private static func walk(
        _ root: String, relative: [String], writer: inout TarWriter, files: inout [String: [UInt8]]
    ) throws {
        let here = ([root] + relative).joined(separator: "/")
        let names = try FileManager.default.contentsOfDirectory(atPath: here)
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for name in names {
            let components = relative + [name]
            let path = components.joined(separator: "/")
            let full = here + "/" + name
            var info = stat()
            guard lstat(full, &info) == 0 else { throw posixError("cannot inspect", full) }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                _ = try BundlePath.components(Array(path.utf8), isDirectory: true)
                writer.addDirectory(path)
                try walk(root, relative: components, writer: &writer, files: &files)
            case S_IFREG:
                _ = try BundlePath.components(Array(path.utf8), isDirectory: false)
                let contents = try readFile(full)
                writer.addFile(path, contents: contents, mode: info.st_mode & 0o111 != 0 ? 0o755 : 0o644)
                files[path] = path == TarReader.manifestName ? contents : []
            case S_IFLNK:
                throw VGWError(.invalidBundle, "pack: \(full) is a symbolic link")
            default:
                throw VGWError(.invalidBundle, "pack: \(full) is not a regular file or directory")
            }
        }
    }

    private static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("cannot open", path) }
        let file = FileDescriptor(fd)
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { Foundation.read(file.raw, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw posixError("cannot read", path)
            }
            if count == 0 { return contents }
            contents += buffer[0..<count]
        }
    }
}
