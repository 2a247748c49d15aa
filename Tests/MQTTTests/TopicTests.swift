import MQTT
import Testing

@Suite("Topic rules")
struct TopicTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var filter: String
        var topic: String
        var matches: Bool
        var testDescription: String { "\(filter) ~ \(topic) = \(matches)" }
    }

    static let cases: [Case] = [
        Case(filter: "a/b", topic: "a/b", matches: true),
        Case(filter: "a/b", topic: "a/c", matches: false),
        Case(filter: "a/b", topic: "a/b/c", matches: false),
        Case(filter: "a/b/c", topic: "a/b", matches: false),
        Case(filter: "a/+", topic: "a/b", matches: true),
        Case(filter: "a/+", topic: "a/", matches: true),
        Case(filter: "a/+", topic: "a", matches: false),
        Case(filter: "a/+", topic: "a/b/c", matches: false),
        Case(filter: "+/+", topic: "/b", matches: true),
        Case(filter: "+", topic: "a", matches: true),
        Case(filter: "+", topic: "/a", matches: false),
        Case(filter: "a/+/c", topic: "a/b/c", matches: true),
        Case(filter: "a/+/c", topic: "a/b/d", matches: false),
        Case(filter: "a/#", topic: "a", matches: true),
        Case(filter: "a/#", topic: "a/b", matches: true),
        Case(filter: "a/#", topic: "a/b/c/d", matches: true),
        Case(filter: "a/#", topic: "b/a", matches: false),
        Case(filter: "#", topic: "a/b", matches: true),
        Case(filter: "#", topic: "/", matches: true),
        Case(filter: "+/#", topic: "a", matches: true),
        Case(filter: "A/b", topic: "a/b", matches: false),
        Case(filter: "a//b", topic: "a//b", matches: true),
        Case(filter: "a/+/b", topic: "a//b", matches: true),
        // `$` topics are not matched by a wildcard in the first level.
        Case(filter: "#", topic: "$SYS/broker/uptime", matches: false),
        Case(filter: "+/broker/uptime", topic: "$SYS/broker/uptime", matches: false),
        Case(filter: "$SYS/#", topic: "$SYS/broker/uptime", matches: true),
        Case(filter: "$SYS/+/uptime", topic: "$SYS/broker/uptime", matches: true),
        Case(filter: "a/#", topic: "a/$b", matches: true),
        // Invalid filters and names match nothing.
        Case(filter: "a/#/b", topic: "a/x/b", matches: false),
        Case(filter: "a/b#", topic: "a/b#", matches: false),
        Case(filter: "a/+", topic: "a/+", matches: false),
        Case(filter: "", topic: "a", matches: false),
        Case(filter: "a", topic: "", matches: false),
        Case(filter: "ü/+", topic: "ü/ß", matches: true),
    ]

    @Test(arguments: cases)
    func matching(_ testCase: Case) {
        #expect(Topic.matches(filter: testCase.filter, topic: testCase.topic) == testCase.matches)
    }

    @Test(arguments: [
        ("a", true), ("a/b/c", true), ("#", true), ("+", true), ("a/+/c", true), ("a/#", true),
        ("+/+/#", true),
        ("/", true), ("$SYS/#", true), ("a b", true),
        ("", false), ("a/#/c", false), ("a#", false), ("a/b+", false), ("+a", false), ("##", false),
        ("a\u{0}b", false),
    ])
    func filterValidity(_ filter: String, _ valid: Bool) {
        #expect(Topic.isValidFilter(filter) == valid)
    }

    @Test(arguments: [
        ("a", true), ("a/b", true), ("/", true), ("$SYS/x", true), ("a b/ü", true),
        ("", false), ("a/+", false), ("a/#", false), ("#", false), ("a\u{0}", false),
    ])
    func nameValidity(_ name: String, _ valid: Bool) {
        #expect(Topic.isValidName(name) == valid)
    }

    @Test func lengthLimit() {
        let longest = String(repeating: "a", count: 65535)
        #expect(Topic.isValidName(longest))
        #expect(Topic.isValidFilter(longest))
        #expect(!Topic.isValidName(longest + "a"))
        #expect(!Topic.isValidFilter(longest + "a"))
        // The limit counts UTF-8 bytes, not characters.
        let wide = String(repeating: "é", count: 32768)
        #expect(!Topic.isValidName(wide))
    }
}
