import CZlib
import Support

/// The one place where zlib return codes are judged.
enum Zlib {
    /// The non-error outcomes of a zlib call.
    enum Status {
        case ok
        case streamEnd
        /// No progress was possible: more input (or output space) is needed.
        case bufferError
    }

    static let chunkSize = 64 << 10

    static func check(_ code: Int32, _ operation: String, _ stream: UnsafeMutablePointer<z_stream>) throws -> Status {
        switch code {
        case Z_OK: return .ok
        case Z_STREAM_END: return .streamEnd
        case Z_BUF_ERROR: return .bufferError
        case Z_DATA_ERROR, Z_NEED_DICT:
            // A corrupt or non-gzip input: the archive's fault, not ours.
            let detail = stream.pointee.msg.map { String(cString: $0) } ?? "corrupt data"
            throw VGWError(.invalidBundle, "archive: not a valid gzip stream (\(detail))")
        case Z_MEM_ERROR:
            throw VGWError(.internalError, "zlib \(operation): out of memory")
        default:
            throw VGWError(.internalError, "zlib \(operation) failed with code \(code)")
        }
    }
}

/// A gzip decoder over one z_stream, freed in deinit.
///
/// The stream is heap-allocated because zlib keeps a pointer back to it, so it must never move.
final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private let output: UnsafeMutableBufferPointer<UInt8>

    init() throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        output = .allocate(capacity: Zlib.chunkSize)
        // 16 + MAX_WBITS: gzip framing only, so a raw or zlib stream is refused as "not gzip".
        let code = inflateInit2_(stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        // On failure deinit still runs (every property is set) and frees both.
        _ = try Zlib.check(code, "inflateInit2", stream)
    }

    deinit {
        // inflateEnd fails only for a stream that was never initialized, which is safe to free.
        _ = inflateEnd(stream)
        stream.deallocate()
        output.deallocate()
    }

    /// Inflates `input` one chunk at a time, handing each chunk to `body` with the number of
    /// compressed bytes consumed so far, so that the caller can stop a bomb early.
    ///
    /// Refuses a truncated stream and any bytes after the end of the (single) gzip member.
    func inflate(
        _ input: [UInt8], _ body: (UnsafeBufferPointer<UInt8>, _ consumed: Int) throws -> Void
    ) throws {
        try input.withUnsafeBufferPointer { source in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
            stream.pointee.avail_in = UInt32(source.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            while true {
                stream.pointee.next_out = output.baseAddress
                stream.pointee.avail_out = UInt32(output.count)
                let status = try Zlib.check(CZlib.inflate(stream, Z_NO_FLUSH), "inflate", stream)
                let produced = output.count - Int(stream.pointee.avail_out)
                if produced > 0 {
                    try body(UnsafeBufferPointer(rebasing: output[0..<produced]), Int(stream.pointee.total_in))
                }
                switch status {
                case .streamEnd:
                    guard stream.pointee.avail_in == 0 else {
                        throw VGWError(.invalidBundle, "archive: data after the end of the gzip stream")
                    }
                    return
                case .bufferError:
                    throw VGWError(.invalidBundle, "archive: truncated gzip stream")
                case .ok:
                    if produced == 0 && stream.pointee.avail_in == 0 {
                        throw VGWError(.invalidBundle, "archive: truncated gzip stream")
                    }
                }
            }
        }
    }
}

/// A gzip encoder over one z_stream, freed in deinit; output is deterministic (zlib writes
/// mtime 0 and no file name in the gzip header).
final class Deflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var output: [UInt8] = []

    init() throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        buffer = .allocate(capacity: Zlib.chunkSize)
        let code = deflateInit2_(
            stream, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
            Int32(MemoryLayout<z_stream>.size))
        // On failure deinit still runs (every property is set) and frees both.
        _ = try Zlib.check(code, "deflateInit2", stream)
    }

    deinit {
        // deflateEnd reports only an unfinished or uninitialized stream; either way it is freed.
        _ = deflateEnd(stream)
        stream.deallocate()
        buffer.deallocate()
    }

    func write(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        try run(bytes, flush: Z_NO_FLUSH)
    }

    /// Ends the gzip member and returns the whole compressed output.
    func finish() throws -> [UInt8] {
        try run(UnsafeBufferPointer(start: nil, count: 0), flush: Z_FINISH)
        return output
    }

    private func run(_ bytes: UnsafeBufferPointer<UInt8>, flush: Int32) throws {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress)
        stream.pointee.avail_in = UInt32(bytes.count)
        defer {
            stream.pointee.next_in = nil
            stream.pointee.avail_in = 0
        }
        while true {
            stream.pointee.next_out = buffer.baseAddress
            stream.pointee.avail_out = UInt32(buffer.count)
            let status = try Zlib.check(CZlib.deflate(stream, flush), "deflate", stream)
            let produced = buffer.count - Int(stream.pointee.avail_out)
            output.append(contentsOf: buffer[0..<produced])
            if flush == Z_FINISH {
                if status == .streamEnd { return }
            } else if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 {
                return
            }
            if status == .bufferError && produced == 0 {
                throw VGWError(.internalError, "zlib deflate made no progress")
            }
        }
    }
}
