import Foundation
import Testing

@testable import Support

private let epoch = Date(timeIntervalSince1970: 0)

@Test func formatPutsFieldsInOrder() {
    let line = Logger.format(
        level: .warning, component: "gateway", message: "provider created",
        fields: ["provider": "acme", "n": 3],
        date: epoch)
    #expect(
        line
            == "time=1970-01-01T00:00:00Z level=warn component=gateway msg=\"provider created\" provider=acme n=3"
    )
}

@Test(arguments: [
    ("plain", "plain"),
    ("", "\"\""),
    ("two words", "\"two words\""),
    ("say \"hi\"", "\"say \\\"hi\\\"\""),
    ("a=b", "\"a=b\""),
    ("back\\slash", "\"back\\\\slash\""),
    ("line\nforged=1", "\"line\\nforged=1\""),
    ("cr\rtab\t", "\"cr\\rtab\\t\""),
    ("bell\u{7}", "\"bell\\u0007\""),
    ("ünïcode", "ünïcode"),
])
func quoteEscapes(value: String, quoted: String) {
    #expect(Logger.quote(value) == quoted)
}

@Test func hostileValueCannotForgeFieldOrLine() {
    let hostile = "x level=error\nmsg=forged \"y\""
    let line = Logger.format(
        level: .info, component: "c", message: hostile, fields: ["topic": hostile], date: epoch)
    #expect(!line.contains("\n"))
    let escaped = "\"x level=error\\nmsg=forged \\\"y\\\"\""
    #expect(
        line == "time=1970-01-01T00:00:00Z level=info component=c msg=\(escaped) topic=\(escaped)")
}

/// Swift (and many log viewers) also break lines at NEL, LINE SEPARATOR and
/// PARAGRAPH SEPARATOR, and terminals act on C1 controls: all are escaped.
@Test(arguments: ["\u{85}", "\u{2028}", "\u{2029}", "\u{7F}", "\u{9B}"])
func unicodeLineBreaksAreEscaped(breaker: String) {
    let line = Logger.format(
        level: .info, component: "c", message: "a\(breaker)level=error", fields: [:], date: epoch)
    #expect(line.split(whereSeparator: \.isNewline).count == 1)
    #expect(!line.unicodeScalars.contains(breaker.unicodeScalars.first!))
}

@Test func levelNames() {
    #expect(Logger.Level(name: "warn") == .warning)
    #expect(Logger.Level(name: "warning") == .warning)
    #expect(Logger.Level(name: "loud") == nil)
    #expect(Logger.Level.debug < .error)
}
