import Foundation
import Synchronization

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
        FileHandle.standardError.write(Data((line + "\n").utf8))
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
                    out += String(format: "\\u%04x", scalar.value)
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
