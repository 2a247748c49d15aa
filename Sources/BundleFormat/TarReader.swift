import Support

/// Where the entries of an archive go: a directory on disk, or nowhere (for `inspect`).
protocol EntrySink: AnyObject {
    func directory(_ components: [String]) throws
    func beginFile(_ components: [String], executable: Bool) throws
    func write(_ bytes: UnsafeBufferPointer<UInt8>) throws
    func endFile() throws
}

/// A streaming tar parser (ustar, GNU long names, pax `path`/`size`), fed arbitrary chunks.
///
/// It accepts only regular files and directories, validates every name with `BundlePath`,
/// and keeps only what it needs in memory: one header, a bounded pax or long-name record,
/// and the manifest. Everything else streams straight to the sink.
final class TarReader {
    static let blockSize = 512
    static let maxMetadataBytes = 64 << 10
    static let manifestName = "manifest.json"

    private enum Payload {
        case file(captureManifest: Bool)
        case pax
        case longName
    }

    private enum State {
        case header
        case payload(Payload, remaining: Int, padding: Int)
        /// After the end-of-archive marker: only zero padding may follow.
        case trailer
    }

    private let sink: EntrySink
    private let limits: ExtractionLimits
    private var state = State.header
    private var header: [UInt8] = []
    private var zeroBlocks = 0
    private var metadata: [UInt8] = []
    private var pendingPath: [UInt8]?
    private var pendingSize: Int?
    private var pendingLongName: [UInt8]?
    private var sawPax = false
    private var entries = 0
    /// Every path seen, explicit or implied by a deeper entry: true for a directory.
    private var kinds: [String: Bool] = [:]
    private var explicit: Set<String> = []
    private(set) var manifestBytes: [UInt8]?

    init(sink: EntrySink, limits: ExtractionLimits) {
        self.sink = sink
        self.limits = limits
        header.reserveCapacity(Self.blockSize)
    }

    /// Whether `path` was extracted as a regular file.
    func isFile(_ path: String) -> Bool { kinds[path] == false }

    func consume(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        var index = 0
        while index < bytes.count {
            switch state {
            case .header:
                let take = min(Self.blockSize - header.count, bytes.count - index)
                header.append(contentsOf: bytes[index..<index + take])
                index += take
                if header.count == Self.blockSize {
                    try handleHeader()
                    header.removeAll(keepingCapacity: true)
                }
            case .payload(let payload, let remaining, let padding):
                if remaining > 0 {
                    let take = min(remaining, bytes.count - index)
                    try deliver(payload, UnsafeBufferPointer(rebasing: bytes[index..<index + take]))
                    index += take
                    state = .payload(payload, remaining: remaining - take, padding: padding)
                } else {
                    let take = min(padding, bytes.count - index)
                    index += take
                    state = .payload(payload, remaining: 0, padding: padding - take)
                }
                if case .payload(_, 0, 0) = state {
                    try complete(payload)
                }
            case .trailer:
                if bytes[index...].contains(where: { $0 != 0 }) {
                    throw VGWError(.invalidBundle, "archive: data after the end-of-archive marker")
                }
                index = bytes.count
            }
        }
    }

    /// Called when the compressed stream has ended: the tar stream must have ended too.
    func finish() throws {
        guard case .trailer = state else { throw VGWError(.invalidBundle, "archive: truncated tar stream") }
    }

    private func deliver(_ payload: Payload, _ bytes: UnsafeBufferPointer<UInt8>) throws {
        switch payload {
        case .file(let captureManifest):
            if captureManifest { manifestBytes?.append(contentsOf: bytes) }
            try sink.write(bytes)
        case .pax, .longName:
            metadata.append(contentsOf: bytes)
        }
    }

    private func complete(_ payload: Payload) throws {
        state = .header
        switch payload {
        case .file: try sink.endFile()
        case .pax: try parsePax()
        case .longName:
            var name = metadata
            while name.last == 0 { name.removeLast() }
            pendingLongName = name
        }
        metadata.removeAll()
    }

    private func handleHeader() throws {
        if header.allSatisfy({ $0 == 0 }) {
            guard pendingPath == nil, pendingLongName == nil, !sawPax else {
                throw VGWError(.invalidBundle, "archive: extended header without an entry")
            }
            zeroBlocks += 1
            if zeroBlocks == 2 { state = .trailer }
            return
        }
        guard zeroBlocks == 0 else {
            throw VGWError(.invalidBundle, "archive: data after the end-of-archive marker")
        }
        let rawName = field(0, 100)
        let shown = String(reflecting: String(decoding: rawName, as: UTF8.self))
        guard let stored = octal(148, 8), stored == checksum() else {
            throw VGWError(.invalidBundle, "entry \(shown): bad header checksum")
        }
        let magic = Array(header[257..<265])
        let isPOSIX = magic == Array("ustar\u{0}00".utf8)
        guard isPOSIX || magic == Array("ustar  \u{0}".utf8) else {
            throw VGWError(.invalidBundle, "entry \(shown): not a ustar, GNU or pax tar header")
        }
        guard var size = octal(124, 12) else { throw VGWError(.invalidBundle, "entry \(shown): invalid size") }
        guard let mode = octal(100, 8) else { throw VGWError(.invalidBundle, "entry \(shown): invalid mode") }

        let type = header[156]
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "L"):
            guard size <= Self.maxMetadataBytes else {
                throw VGWError(.invalidBundle, "entry \(shown): extended header larger than \(Self.maxMetadataBytes)")
            }
            let isPax = type == UInt8(ascii: "x")
            guard isPax ? !sawPax : pendingLongName == nil else {
                throw VGWError(.invalidBundle, "entry \(shown): two extended headers for one entry")
            }
            sawPax = sawPax || isPax
            try startPayload(isPax ? .pax : .longName, size: size)
            return
        case UInt8(ascii: "0"), 0, UInt8(ascii: "5"):
            break
        default:
            throw VGWError(.invalidBundle, "entry \(shown): \(Self.describe(type)) not allowed")
        }

        var name = rawName
        let prefix = isPOSIX ? field(345, 155) : []
        if !prefix.isEmpty { name = prefix + [UInt8(ascii: "/")] + name }
        if let long = pendingPath ?? pendingLongName { name = long }
        if let pendingSize { size = pendingSize }
        pendingPath = nil
        pendingLongName = nil
        pendingSize = nil
        sawPax = false

        entries += 1
        guard entries <= limits.maxEntries else {
            throw VGWError(.tooLarge, "archive: more than \(limits.maxEntries) entries")
        }
        guard size <= limits.maxUncompressedBytes else {
            throw VGWError(.tooLarge, "entry \(shown): larger than \(limits.maxUncompressedBytes) bytes")
        }
        let isDirectory = type == UInt8(ascii: "5")
        let components = try BundlePath.components(name, isDirectory: isDirectory)
        let path = components.joined(separator: "/")
        let display = String(reflecting: path)
        if components.isEmpty {
            // "./": the bundle root, which exists already.
            guard size == 0 else { throw VGWError(.invalidBundle, "entry \(display): directory with data") }
            return
        }
        try record(components, isDirectory: isDirectory, display: display)

        if isDirectory {
            guard size == 0 else { throw VGWError(.invalidBundle, "entry \(display): directory with data") }
            try sink.directory(components)
            return
        }
        let isManifest = path == Self.manifestName
        if isManifest {
            guard size <= BundleManifest.maxManifestBytes else {
                throw VGWError(.tooLarge, "manifest: larger than \(BundleManifest.maxManifestBytes) bytes")
            }
            manifestBytes = []
        }
        // Set-user-ID, set-group-ID and sticky bits are dropped: only "executable or not" survives.
        try sink.beginFile(components, executable: mode & 0o111 != 0)
        try startPayload(.file(captureManifest: isManifest), size: size)
    }

    /// Refuses duplicates and paths through a file, and remembers implied directories.
    private func record(_ components: [String], isDirectory: Bool, display: String) throws {
        let path = components.joined(separator: "/")
        guard explicit.insert(path).inserted else {
            throw VGWError(.invalidBundle, "entry \(display): duplicate entry")
        }
        for depth in 1..<components.count {
            let ancestor = components[0..<depth].joined(separator: "/")
            guard kinds[ancestor] != false else {
                throw VGWError(.invalidBundle, "entry \(display): parent \(ancestor) is a file")
            }
            kinds[ancestor] = true
        }
        if let existing = kinds[path], existing != isDirectory {
            throw VGWError(.invalidBundle, "entry \(display): conflicts with a directory of the same name")
        }
        kinds[path] = isDirectory
    }

    private func startPayload(_ payload: Payload, size: Int) throws {
        let padding = (Self.blockSize - size % Self.blockSize) % Self.blockSize
        state = .payload(payload, remaining: size, padding: padding)
        // An empty payload has no bytes to wait for (and no padding): complete it now.
        if size == 0 { try complete(payload) }
    }

    /// Parses pax records ("<length> <key>=<value>\n"); only records that are understood are accepted.
    private func parsePax() throws {
        var rest = metadata[...]
        while !rest.isEmpty {
            guard let space = rest.firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)),
                length > space - rest.startIndex + 1, length <= rest.count,
                rest[rest.startIndex + length - 1] == UInt8(ascii: "\n")
            else { throw VGWError(.invalidBundle, "archive: malformed pax header") }
            let record = rest[(space + 1)..<(rest.startIndex + length - 1)]
            rest = rest[(rest.startIndex + length)...]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else {
                throw VGWError(.invalidBundle, "archive: malformed pax record")
            }
            let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
            let value = Array(record[(equals + 1)...])
            switch key {
            case "path":
                pendingPath = value
            case "size":
                guard value.count <= 18, !value.isEmpty, value.allSatisfy({ (48...57).contains($0) }),
                    let size = Int(String(decoding: value, as: UTF8.self))
                else { throw VGWError(.invalidBundle, "archive: invalid pax size") }
                pendingSize = size
            case "mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment", "linkpath":
                // Ownership and times are not kept; the link target only matters to a link, which is refused.
                continue
            default:
                throw VGWError(.invalidBundle, "archive: unsupported pax record \(String(reflecting: key))")
            }
        }
    }

    private func field(_ offset: Int, _ length: Int) -> [UInt8] {
        let bytes = header[offset..<offset + length]
        return Array(bytes.prefix(while: { $0 != 0 }))
    }

    /// An octal number field: optional leading spaces, digits, then NUL or spaces.
    /// Base-256 (GNU) values are refused: they only matter for sizes far over any limit.
    private func octal(_ offset: Int, _ length: Int) -> Int? {
        var value = 0
        var index = offset
        let end = offset + length
        while index < end && header[index] == UInt8(ascii: " ") { index += 1 }
        var digits = 0
        while index < end, (48...55).contains(header[index]) {
            value = value * 8 + Int(header[index] - 48)
            digits += 1
            index += 1
        }
        guard digits > 0 else { return nil }
        while index < end {
            guard header[index] == 0 || header[index] == UInt8(ascii: " ") else { return nil }
            index += 1
        }
        return value
    }

    private func checksum() -> Int {
        var sum = 0
        for (index, byte) in header.enumerated() {
            sum += (148..<156).contains(index) ? 32 : Int(byte)
        }
        return sum
    }

    private static func describe(_ type: UInt8) -> String {
        switch type {
        case UInt8(ascii: "1"): return "hard link"
        case UInt8(ascii: "2"): return "symbolic link"
        case UInt8(ascii: "3"): return "character device"
        case UInt8(ascii: "4"): return "block device"
        case UInt8(ascii: "6"): return "FIFO"
        case UInt8(ascii: "g"): return "global pax header"
        default:
            let printable = (0x21...0x7e).contains(type)
            return "entry type " + (printable ? "'\(Character(Unicode.Scalar(type)))'" : "\(type)")
        }
    }
}
