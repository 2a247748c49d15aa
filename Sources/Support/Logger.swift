import Synchronization

// FoundationEssentials, not Foundation, where it exists: every module logs, and on Linux a
// single use of full Foundation (FileHandle, String(format:)) links all of it and ICU into a
// statically linked service (about 55 MB instead of a few), over the 16 MiB bundle limit.
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A small structured logger: one line per event, `logfmt` style, to standard error.
///
/// `time=... level=info component=gateway msg="provider created" provider=acme`
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case debug = 0
        case info, warning, error

        public var name: String {
            switch self {
            case .debug: "debug"
            case .info: "info"
            case .warning: "warn"
            case .error: "error"
            }
        }

        public init?(name: String) {
            guard let level = Level.allCases.first(where: { $0.name == name || "\($0)" == name }) else {
                return nil
            }
            self = level
        }

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// Where log lines go; tests capture them, the daemon writes them to standard error.
    public typealias Sink = @Sendable (String) -> Void

    /// The minimum level, shared by every logger of the process.
    public static let threshold = Mutex<Level>(.info)

    public static let standardError: Sink = { line in
        let bytes = Array((line + "\n").utf8)
        // One write(2) per line (retried when interrupted or short) keeps lines of concurrent
        // loggers whole.
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = write(2, base + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }

    public let component: String
    private let sink: Sink

    public init(_ component: String, sink: @escaping Sink = Logger.standardError) {
        self.component = component
        self.sink = sink
    }

    public func debug(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, Any> = [:]) {
        log(.debug, message(), fields)
    }

    public func info(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, Any> = [:]) {
        log(.info, message(), fields)
    }

    public func warning(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, Any> = [:]) {
        log(.warning, message(), fields)
    }

    public func error(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, Any> = [:]) {
        log(.error, message(), fields)
    }

    public func log(_ level: Level, _ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, Any>) {
        guard level >= Logger.threshold.withLock({ $0 }) else { return }
        sink(Logger.format(level: level, component: component, message: message(), fields: fields))
    }

    /// Formats one line; public so that tests can check the escaping.
    public static func format(
        level: Level, component: String, message: String, fields: KeyValuePairs<String, Any>, date: Date = Date()
    ) -> String {
        var line = "time=\(date.formatted(.iso8601)) level=\(level.name) component=\(component) msg=\(quote(message))"
        for (key, value) in fields {
            line += " \(key)=\(quote(String(describing: value)))"
        }
        return line
    }

    /// Quotes a value when it holds spaces, quotes, `=` or control characters, so that
    /// a hostile value (a topic, a provider id) cannot forge another field or line.
    static func quote(_ value: String) -> String {
        let needsQuotes =
            value.isEmpty
            || value.unicodeScalars.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || isControl($0) }
        guard needsQuotes else { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if isControl(scalar) {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a
    /// reader might take for the end of a line.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
