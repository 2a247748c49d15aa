import Support

/// Builds tar archives entry by entry, gzipped on request: `pack` uses it for bundles, and
/// tests use it to craft the hostile archives (links, devices, `../` names, bad checksums,
/// bombs) that the reader must refuse. It therefore writes whatever it is told to.
public struct TarWriter: Sendable {
    /// A stretch of the archive: bytes, or zeros produced lazily so that a test can build a
    /// decompression bomb without holding it in memory.
    private enum Part: Sendable {
        case bytes([UInt8])
        case zeros(Int)
    }

    private var parts: [Part] = []

    public init() {}

    /// A regular file; a name over 100 bytes gets a pax `path` record.
    public mutating func addFile(_ name: String, contents: [UInt8] = [], mode: Int = 0o644) {
        addLongNameRecordIfNeeded(name)
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "0"), mode: mode, size: contents.count)
        addPayload(contents)
    }

    /// A regular file of `size` zero bytes, generated while gzipping.
    public mutating func addZeroFile(_ name: String, size: Int, mode: Int = 0o644) {
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "0"), mode: mode, size: size)
        parts.append(.zeros(size + Self.padding(size)))
    }

    /// A directory; the name is written with a trailing "/" as tar does.
    public mutating func addDirectory(_ name: String, mode: Int = 0o755) {
        let slashed = name.hasSuffix("/") ? name : name + "/"
        addLongNameRecordIfNeeded(slashed)
        addEntry(name: Array(slashed.utf8), type: UInt8(ascii: "5"), mode: mode)
    }

    public mutating func addSymlink(_ name: String, target: String) {
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "2"), mode: 0o777, linkName: Array(target.utf8))
    }

    public mutating func addHardLink(_ name: String, target: String) {
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "1"), mode: 0o644, linkName: Array(target.utf8))
    }

    public mutating func addCharacterDevice(_ name: String) {
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "3"), mode: 0o666)
    }

    public mutating func addBlockDevice(_ name: String) {
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "4"), mode: 0o660)
    }

    public mutating func addFIFO(_ name: String) {
        addEntry(name: Array(name.utf8), type: UInt8(ascii: "6"), mode: 0o644)
    }

    /// A pax extended header ('x') whose records apply to the next entry.
    public mutating func addPaxHeader(_ records: [(key: String, value: String)]) {
        var body: [UInt8] = []
        for (key, value) in records {
            let tail = " \(key)=\(value)\n".utf8.count
            var length = tail + 1
            while String(length).utf8.count + tail != length { length += 1 }
            body += Array("\(length) \(key)=\(value)\n".utf8)
        }
        addEntry(name: Array("PaxHeader".utf8), type: UInt8(ascii: "x"), mode: 0o644, size: body.count)
        addPayload(body)
    }

    /// A GNU long-name record ('L') naming the next entry.
    public mutating func addGNULongName(_ name: String) {
        let body = Array(name.utf8) + [0]
        addEntry(
            name: Array("././@LongLink".utf8), type: UInt8(ascii: "L"), mode: 0o644, size: body.count, gnu: true)
        addPayload(body)
    }

    /// Any header: `name` is cut to 100 bytes, `size` need not match the data that follows,
    /// and `corruptChecksum` stores a wrong checksum.
    public mutating func addEntry(
        name: [UInt8], type: UInt8, mode: Int, size: Int = 0, linkName: [UInt8] = [], gnu: Bool = false,
        corruptChecksum: Bool = false
    ) {
        parts.append(
            .bytes(
                Self.header(
                    name: name, type: type, mode: mode, size: size, linkName: linkName, gnu: gnu,
                    corruptChecksum: corruptChecksum)))
    }

    /// Entry data followed by its padding to the next 512-byte block.
    public mutating func addPayload(_ contents: [UInt8]) {
        parts.append(.bytes(contents + [UInt8](repeating: 0, count: Self.padding(contents.count))))
    }

    /// Arbitrary bytes, for archives no honest writer produces.
    public mutating func addRaw(_ bytes: [UInt8]) {
        parts.append(.bytes(bytes))
    }

    /// The end-of-archive marker: two zero blocks.
    public mutating func addEndMarker() {
        parts.append(.zeros(2 * 512))
    }

    /// The uncompressed tar bytes (zero files included, so keep those small here).
    public var tarBytes: [UInt8] {
        parts.flatMap { part -> [UInt8] in
            switch part {
            case .bytes(let bytes): return bytes
            case .zeros(let count): return [UInt8](repeating: 0, count: count)
            }
        }
    }

    /// The archive gzipped, streamed through deflate a chunk at a time.
    public func gzipped() throws -> [UInt8] {
        let deflater = try Deflater()
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for part in parts {
            switch part {
            case .bytes(let bytes):
                try bytes.withUnsafeBufferPointer { try deflater.write($0) }
            case .zeros(var count):
                while count > 0 {
                    let take = min(count, zeros.count)
                    try zeros.withUnsafeBufferPointer {
                        try deflater.write(UnsafeBufferPointer(rebasing: $0[0..<take]))
                    }
                    count -= take
                }
            }
        }
        return try deflater.finish()
    }

    /// Gzips any bytes (for tests of corrupt tar content inside a valid gzip stream).
    public static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        var writer = TarWriter()
        writer.addRaw(bytes)
        return try writer.gzipped()
    }

    private mutating func addLongNameRecordIfNeeded(_ name: String) {
        if name.utf8.count > 100 { addPaxHeader([(key: "path", value: name)]) }
    }

    private static func padding(_ size: Int) -> Int { (512 - size % 512) % 512 }

    /// A ustar header (or GNU, with `gnu`), deterministic: owner 0, time 0, no user names.
    private static func header(
        name: [UInt8], type: UInt8, mode: Int, size: Int, linkName: [UInt8], gnu: Bool, corruptChecksum: Bool
    ) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int, length: Int) {
            for (index, byte) in bytes.prefix(length).enumerated() { block[offset + index] = byte }
        }
        func putOctal(_ value: Int, at offset: Int, length: Int) {
            let digits = String(value, radix: 8)
            let padded = String(repeating: "0", count: max(0, length - 1 - digits.count)) + digits
            put(Array(padded.utf8), at: offset, length: length - 1)
        }
        put(name, at: 0, length: 100)
        putOctal(mode, at: 100, length: 8)
        putOctal(0, at: 108, length: 8)
        putOctal(0, at: 116, length: 8)
        putOctal(size, at: 124, length: 12)
        putOctal(0, at: 136, length: 12)
        block[156] = type
        put(linkName, at: 157, length: 100)
        put(Array((gnu ? "ustar  \u{0}" : "ustar\u{0}00").utf8), at: 257, length: 8)
        putOctal(0, at: 329, length: 8)
        putOctal(0, at: 337, length: 8)
        put(Array("        ".utf8), at: 148, length: 8)
        var sum = block.reduce(0) { $0 + Int($1) }
        if corruptChecksum { sum += 1 }
        putOctal(sum, at: 148, length: 7)
        block[154] = 0
        block[155] = UInt8(ascii: " ")
        return block
    }
}
