import Testing

@testable import Support

/// A tree shaped like the real `vgw` one.
let vgw = CommandSpec(
    "vgw", summary: "Control a VirtualGateway.",
    options: [
        .value("--host", name: "host", help: "Broker host"),
        .value("--port", "-p", name: "port", help: "Broker port"),
        .flag("--json", help: "Print JSON"),
    ],
    subcommands: [
        CommandSpec(
            "provider", summary: "Manage providers",
            subcommands: [
                CommandSpec(
                    "create", summary: "Create a provider",
                    positionals: [PositionalSpec("provider", help: "Provider id")],
                    options: [.flag("--stopped", help: "Create it stopped")]),
                CommandSpec("list", summary: "List providers"),
            ]),
        CommandSpec(
            "client", summary: "Manage clients",
            subcommands: [
                CommandSpec(
                    "add", summary: "Add a client",
                    positionals: [
                        PositionalSpec("provider", help: "Provider id"),
                        PositionalSpec("name", help: "Client name"),
                        PositionalSpec("kind", help: "device or service", optional: true),
                    ],
                    options: [.value("--tag", "-t", name: "tag", help: "A tag", repeatable: true)])
            ]),
    ])

let vgwd = CommandSpec(
    "vgwd", summary: "The VirtualGateway daemon.",
    options: [
        .value("--data-dir", name: "dir", help: "Where state lives"),
        .value("--port", name: "port", help: "Broker port"),
        .value("--host", name: "host", help: "Listen address"),
        .value("--log-level", name: "level", help: "debug, info, warn or error"),
    ])

struct ParseCase: Sendable, CustomTestStringConvertible {
    var line: String
    var path: [String]
    var positionals: [String]
    var options: [String: [String]] = [:]
    var testDescription: String { line }
}

@Test(arguments: [
    ParseCase(
        line: "provider create acme --json", path: ["provider", "create"], positionals: ["acme"],
        options: ["--json": [""]]),
    ParseCase(
        line: "--json provider create acme", path: ["provider", "create"], positionals: ["acme"],
        options: ["--json": [""]]),
    ParseCase(
        line: "provider create --stopped acme", path: ["provider", "create"], positionals: ["acme"],
        options: ["--stopped": [""]]),
    ParseCase(
        line: "provider create acme --port=1884", path: ["provider", "create"], positionals: ["acme"],
        options: ["--port": ["1884"], "-p": ["1884"]]),
    ParseCase(
        line: "provider create acme -p 1884", path: ["provider", "create"], positionals: ["acme"],
        options: ["--port": ["1884"]]),
    ParseCase(
        line: "provider create acme --host=a=b", path: ["provider", "create"], positionals: ["acme"],
        options: ["--host": ["a=b"]]),
    ParseCase(
        line: "provider create -- --acme", path: ["provider", "create"], positionals: ["--acme"]),
    ParseCase(line: "provider create -- -h", path: ["provider", "create"], positionals: ["-h"]),
    ParseCase(line: "provider create list", path: ["provider", "create"], positionals: ["list"]),
    ParseCase(line: "provider list", path: ["provider", "list"], positionals: []),
    ParseCase(line: "client add acme lamp", path: ["client", "add"], positionals: ["acme", "lamp"]),
    ParseCase(
        line: "client add acme lamp service -t a --tag b", path: ["client", "add"],
        positionals: ["acme", "lamp", "service"], options: ["--tag": ["a", "b"], "-t": ["a", "b"]]),
    ParseCase(
        line: "client add --port 1 acme lamp", path: ["client", "add"], positionals: ["acme", "lamp"],
        options: ["--port": ["1"]]),
])
func parsesValidLines(_ test: ParseCase) throws {
    let parsed = try ArgumentParser.parse(test.line.split(separator: " ").map(String.init), root: vgw)
    #expect(parsed.path == test.path)
    #expect(parsed.positionals == test.positionals)
    #expect(!parsed.helpRequested)
    for (name, values) in test.options {
        #expect(parsed.values(name) == values, "\(name)")
        #expect(parsed.flag(name))
    }
    #expect(!parsed.flag("--stopped") || test.options["--stopped"] != nil)
}

@Test func daemonLine() throws {
    let parsed = try ArgumentParser.parse(
        [
            "--data-dir", "/var/lib/vgw", "--port", "1884", "--host", "127.0.0.1", "--log-level", "debug",
        ], root: vgwd)
    #expect(parsed.path == [])
    #expect(parsed.value("--data-dir") == "/var/lib/vgw")
    #expect(try parsed.int("--port") == 1884)
    #expect(parsed.value("--host") == "127.0.0.1")
    #expect(parsed.value("--log-level") == "debug")
    #expect(parsed.value("--nothing") == nil)
    #expect(try parsed.int("--data-dir-missing") == nil)
}

@Test func valuesMayLookLikeOptions() throws {
    let parsed = try ArgumentParser.parse(["--host", "-x", "--port", "-1"], root: vgwd)
    #expect(parsed.value("--host") == "-x")
    #expect(try parsed.int("--port") == -1)
}

@Test func intRejectsNonNumbers() throws {
    let parsed = try ArgumentParser.parse(["--port", "http"], root: vgwd)
    #expect(throws: VGWError(.usage, "option --port expects an integer, got 'http'")) {
        try parsed.int("--port")
    }
}

struct ErrorCase: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    var message: String
    var testDescription: String { arguments.joined(separator: " ") }
}

@Test(arguments: [
    ErrorCase(
        arguments: ["provider", "create", "acme", "--foo"],
        message: "unknown option --foo for 'vgw provider create'"),
    ErrorCase(
        arguments: ["provider", "create", "acme", "--jsn"],
        message: "unknown option --jsn for 'vgw provider create'; did you mean '--json'?"),
    ErrorCase(
        arguments: ["--stopped", "provider", "create", "acme"],
        message: "unknown option --stopped for 'vgw'"),
    ErrorCase(
        arguments: ["provider", "crate", "acme"],
        message: "unknown command 'crate' for 'vgw provider'; did you mean 'create'?"),
    ErrorCase(arguments: ["zzz"], message: "unknown command 'zzz' for 'vgw'"),
    ErrorCase(arguments: [], message: "'vgw' needs a command: provider, client"),
    ErrorCase(arguments: ["provider"], message: "'vgw provider' needs a command: create, list"),
    ErrorCase(
        arguments: ["provider", "create"], message: "missing <provider> for 'vgw provider create'"),
    ErrorCase(
        arguments: ["client", "add"], message: "missing <provider> <name> for 'vgw client add'"),
    ErrorCase(
        arguments: ["provider", "create", "a", "b"],
        message: "unexpected argument 'b' for 'vgw provider create'"),
    ErrorCase(
        arguments: ["client", "add", "a", "b", "c", "d"],
        message: "unexpected argument 'd' for 'vgw client add'"),
    ErrorCase(
        arguments: ["provider", "list", "--port"], message: "option --port needs a value <port>"),
    ErrorCase(
        arguments: ["provider", "list", "--json=yes"], message: "option --json takes no value"),
    ErrorCase(
        arguments: ["provider", "list", "--port", "1", "-p", "2"],
        message: "option --port given more than once"),
])
func rejectsBadLines(_ test: ErrorCase) {
    #expect(throws: VGWError(.usage, test.message)) {
        try ArgumentParser.parse(test.arguments, root: vgw)
    }
}

@Test(arguments: [
    (["--help"], [String]()),
    (["provider", "-h"], ["provider"]),
    (["provider", "create", "--help"], ["provider", "create"]),
    (["provider", "create", "--bogus", "-h"], ["provider", "create"]),
    (["provider", "crate", "-h"], ["provider"]),
    (["client", "add", "a", "b", "c", "d", "--help", "--port"], ["client", "add"]),
])
func helpAnywhereSuppressesErrors(arguments: [String], path: [String]) throws {
    let parsed = try ArgumentParser.parse(arguments, root: vgw)
    #expect(parsed.helpRequested)
    #expect(parsed.path == path)
}

@Test func helpListsSubcommandsAligned() {
    let text = ArgumentParser.help(for: ["provider"], root: vgw)
    #expect(text.hasPrefix("Manage providers\n\nUsage:\n  vgw provider <command> [options]\n"))
    #expect(text.contains("Commands:\n  create   Create a provider\n  list     List providers\n"))
    #expect(
        text.contains(
            "Global options:\n  --host <host>       Broker host\n  --port, -p <port>   Broker port\n  --json              Print JSON\n"
        ))
    #expect(text.contains("Use \"vgw provider <command> --help\""))
}

@Test func helpForLeafListsPositionalsAndOptions() {
    let text = ArgumentParser.help(for: ["client", "add"], root: vgw)
    #expect(text.contains("Usage:\n  vgw client add <provider> <name> [<kind>] [options]\n"))
    #expect(
        text.contains(
            "Arguments:\n  <provider>   Provider id\n  <name>       Client name\n  [<kind>]     device or service\n"
        ))
    #expect(
        text.contains(
            "Options:\n  --tag, -t <tag>   A tag (repeatable)\n  -h, --help        Show this help\n"))
    #expect(!text.contains("Commands:"))
}

@Test func helpForUnknownPathFallsBackToDeepestKnownCommand() {
    #expect(
        ArgumentParser.help(for: ["provider", "nope"], root: vgw)
            == ArgumentParser.help(for: ["provider"], root: vgw))
}

@Test(arguments: [
    ("create", "crate", 1), ("", "abc", 3), ("kitten", "sitting", 3), ("same", "same", 0),
    ("ü", "u", 1),
])
func editDistance(a: String, b: String, distance: Int) {
    #expect(ArgumentParser.editDistance(a, b) == distance)
    #expect(ArgumentParser.editDistance(b, a) == distance)
}
