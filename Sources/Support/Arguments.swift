/// A small command-line parser for `vgw` and `vgwd`, in the style of kubectl:
/// `vgw provider create acme --json`. Specs are plain values, so a test can build a
/// command tree, parse a line and inspect the result without running anything.

/// An option: a flag (`--json`) when `valueName` is nil, otherwise it takes a value
/// (`--port 1884` or `--port=1884`).
public struct OptionSpec: Sendable {
    /// Every spelling, long first: `["--port", "-p"]`. The first is the one shown in errors.
    public var names: [String]
    public var valueName: String?
    public var help: String
    /// Whether it may be given more than once (each value is kept, see `values(_:)`).
    public var repeatable: Bool

    public init(_ names: [String], valueName: String? = nil, help: String, repeatable: Bool = false) {
        self.names = names
        self.valueName = valueName
        self.help = help
        self.repeatable = repeatable
    }

    public static func flag(_ names: String..., help: String) -> OptionSpec {
        OptionSpec(names, help: help)
    }

    public static func value(_ names: String..., name: String, help: String, repeatable: Bool = false)
        -> OptionSpec
    {
        OptionSpec(names, valueName: name, help: help, repeatable: repeatable)
    }

    var takesValue: Bool { valueName != nil }
    var displayName: String { names.first ?? "" }
}

public struct PositionalSpec: Sendable {
    public var name: String
    public var help: String
    /// Optional positionals must come after all required ones.
    public var optional: Bool

    public init(_ name: String, help: String, optional: Bool = false) {
        self.name = name
        self.help = help
        self.optional = optional
    }

    var synopsis: String { optional ? "[<\(name)>]" : "<\(name)>" }
}

/// A command: either a group of subcommands (`vgw provider`) or a leaf taking
/// positionals (`vgw provider create <id>`). Options declared on a command also
/// apply to all its subcommands, so the root's options are global.
public struct CommandSpec: Sendable {
    public var name: String
    public var summary: String
    public var positionals: [PositionalSpec]
    public var options: [OptionSpec]
    public var subcommands: [CommandSpec]

    public init(
        _ name: String, summary: String, positionals: [PositionalSpec] = [], options: [OptionSpec] = [],
        subcommands: [CommandSpec] = []
    ) {
        self.name = name
        self.summary = summary
        self.positionals = positionals
        self.options = options
        self.subcommands = subcommands
    }

    /// The positional synopsis, e.g. `<provider> <name> [<kind>]`.
    public var usage: String { positionals.map(\.synopsis).joined(separator: " ") }

    func subcommand(_ name: String) -> CommandSpec? { subcommands.first { $0.name == name } }
}

/// The outcome of parsing: which command was chosen, its positionals and options.
public struct ParsedArguments: Sendable, Equatable {
    /// Subcommand names below the root, e.g. `["provider", "create"]`.
    public var path: [String]
    public var positionals: [String]
    /// `-h` or `--help` appeared; the caller should print `ArgumentParser.help(for: path, ...)`.
    /// Positionals and options are then best-effort and unvalidated.
    public var helpRequested: Bool
    /// Values by every spelling of the option, in order given; flags hold one empty string per use.
    var options: [String: [String]]

    public init(path: [String] = [], positionals: [String] = [], helpRequested: Bool = false) {
        self.path = path
        self.positionals = positionals
        self.helpRequested = helpRequested
        self.options = [:]
    }

    /// Whether the flag was given; any of its spellings may be used to ask.
    public func flag(_ name: String) -> Bool { options[name] != nil }

    /// The option's value, the last one when it was repeated.
    public func value(_ name: String) -> String? { options[name]?.last }

    public func values(_ name: String) -> [String] { options[name] ?? [] }

    public func int(_ name: String) throws -> Int? {
        guard let text = value(name) else { return nil }
        guard let number = Int(text) else {
            throw VGWError(.usage, "option \(name) expects an integer, got '\(text)'")
        }
        return number
    }

    mutating func record(_ option: OptionSpec, _ value: String) {
        for name in option.names { options[name, default: []].append(value) }
    }
}

public enum ArgumentParser {
    static let helpNames: Set<String> = ["-h", "--help"]

    /// Parses `arguments` (without the program name) against `root`.
    ///
    /// Errors are `VGWError(.usage)` naming the command, e.g.
    /// `unknown option --foo for 'vgw provider create'`. When help is requested, errors
    /// are suppressed so that `vgw provider crate --help` still finds the nearest help.
    public static func parse(_ arguments: [String], root: CommandSpec) throws -> ParsedArguments {
        let helpRequested = arguments.prefix { $0 != "--" }.contains { helpNames.contains($0) }
        var parsed = ParsedArguments(helpRequested: helpRequested)
        var chain = [root]
        var command: CommandSpec { chain[chain.count - 1] }
        var inScope: [OptionSpec] { chain.flatMap(\.options) }
        var commandName: String { chain.map(\.name).joined(separator: " ") }
        var optionsEnded = false
        var index = arguments.startIndex

        // In help mode a usage error only skips the offending word.
        func fail(_ message: String) throws {
            if !helpRequested { throw VGWError(.usage, message) }
        }

        while index < arguments.endIndex {
            let word = arguments[index]
            index += 1
            if optionsEnded {
                parsed.positionals.append(word)
            } else if word == "--" {
                optionsEnded = true
            } else if helpNames.contains(word) {
                continue
            } else if word.hasPrefix("-") && word.count > 1 {
                let (name, inline) = split(word)
                guard let option = inScope.first(where: { $0.names.contains(name) }) else {
                    let hint = suggestion(for: name, among: inScope.flatMap(\.names))
                    try fail("unknown option \(name) for '\(commandName)'\(hint)")
                    continue
                }
                let value: String
                if !option.takesValue {
                    if inline != nil { try fail("option \(option.displayName) takes no value") }
                    value = ""
                } else if let inline {
                    value = inline
                } else if index < arguments.endIndex {
                    value = arguments[index]
                    index += 1
                } else {
                    try fail("option \(option.displayName) needs a value <\(option.valueName ?? "value")>")
                    continue
                }
                if !option.repeatable && parsed.flag(option.displayName) {
                    try fail("option \(option.displayName) given more than once")
                }
                parsed.record(option, value)
            } else if parsed.positionals.isEmpty, let sub = command.subcommand(word) {
                chain.append(sub)
                parsed.path.append(word)
            } else if !command.subcommands.isEmpty && command.positionals.isEmpty {
                let hint = suggestion(for: word, among: command.subcommands.map(\.name))
                try fail("unknown command '\(word)' for '\(commandName)'\(hint)")
            } else {
                parsed.positionals.append(word)
            }
        }
        if helpRequested { return parsed }

        if !command.subcommands.isEmpty && command.positionals.isEmpty {
            let names = command.subcommands.map(\.name).joined(separator: ", ")
            throw VGWError(.usage, "'\(commandName)' needs a command: \(names)")
        }
        let required = command.positionals.filter { !$0.optional }
        if parsed.positionals.count < required.count {
            let missing = required[parsed.positionals.count...].map(\.synopsis).joined(separator: " ")
            throw VGWError(.usage, "missing \(missing) for '\(commandName)'")
        }
        if parsed.positionals.count > command.positionals.count {
            let extra = parsed.positionals[command.positionals.count]
            throw VGWError(.usage, "unexpected argument '\(extra)' for '\(commandName)'")
        }
        return parsed
    }

    /// Help for the command at `path`, or for the deepest known command along it.
    public static func help(for path: [String], root: CommandSpec) -> String {
        var chain = [root]
        for name in path {
            guard let sub = chain[chain.count - 1].subcommand(name) else { break }
            chain.append(sub)
        }
        let command = chain[chain.count - 1]
        let fullName = chain.map(\.name).joined(separator: " ")

        var synopsis = [fullName]
        if !command.subcommands.isEmpty { synopsis.append("<command>") }
        if !command.usage.isEmpty { synopsis.append(command.usage) }
        synopsis.append("[options]")

        var sections = [command.summary, "Usage:\n  " + synopsis.joined(separator: " ")]
        if !command.subcommands.isEmpty {
            sections.append(table("Commands:", command.subcommands.map { ($0.name, $0.summary) }))
        }
        if !command.positionals.isEmpty {
            sections.append(table("Arguments:", command.positionals.map { ($0.synopsis, $0.help) }))
        }
        let helpOption = OptionSpec.flag("-h", "--help", help: "Show this help")
        sections.append(table("Options:", (command.options + [helpOption]).map(optionRow)))
        let inherited = chain.dropLast().flatMap(\.options)
        if !inherited.isEmpty {
            sections.append(table("Global options:", inherited.map(optionRow)))
        }
        if !command.subcommands.isEmpty {
            sections.append("Use \"\(fullName) <command> --help\" for more about a command.")
        }
        return sections.joined(separator: "\n\n") + "\n"
    }

    private static func optionRow(_ option: OptionSpec) -> (String, String) {
        let names = option.names.joined(separator: ", ")
        let value = option.valueName.map { " <\($0)>" } ?? ""
        let repeated = option.repeatable ? " (repeatable)" : ""
        return (names + value, option.help + repeated)
    }

    /// A titled two-column table, the second column aligned like kubectl's.
    private static func table(_ title: String, _ rows: [(String, String)]) -> String {
        let width = rows.map(\.0.count).max() ?? 0
        let lines = rows.map { left, right in
            "  " + left + String(repeating: " ", count: width - left.count + 3) + right
        }
        return ([title] + lines).joined(separator: "\n")
    }

    /// `--name=value` splits at the first `=`; short options never carry inline values.
    private static func split(_ word: String) -> (name: String, value: String?) {
        guard word.hasPrefix("--"), let equals = word.firstIndex(of: "=") else { return (word, nil) }
        return (String(word[..<equals]), String(word[word.index(after: equals)...]))
    }

    /// `; did you mean 'create'?` for a candidate within a typo or two, else empty.
    static func suggestion(for word: String, among candidates: [String]) -> String {
        let limit = max(1, word.count / 3)
        let best =
            candidates
            .map { (name: $0, distance: editDistance(word, $0)) }
            .filter { $0.distance <= limit }
            .min { $0.distance < $1.distance }
        return best.map { "; did you mean '\($0.name)'?" } ?? ""
    }

    /// Levenshtein distance, one row at a time.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        var previous = Array(0...b.count)
        for (i, charA) in a.enumerated() {
            var current = [i + 1]
            for (j, charB) in b.enumerated() {
                current.append(
                    min(previous[j + 1] + 1, current[j] + 1, previous[j] + (charA == charB ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}
