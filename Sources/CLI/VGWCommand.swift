import Foundation
import Gateway
import Protocol
import Support

/// `vgw`: the operator's command line. Each command is one management request to `vgwd`
/// through the broker, with the operator identity found in the data directory.
public enum VGWCommand {
    static let global: [OptionSpec] = [
        .value(
            "--data-dir", "-d", name: "dir",
            help: "vgwd's data directory (default $VGW_DATA_DIR, $XDG_STATE_HOME/vgw or ./vgw-data)"),
        .flag("--json", "-o", help: "print the raw JSON result, for scripts"),
        .value("--timeout", name: "seconds", help: "how long to wait for vgwd's answer (default 10)"),
    ]

    static let providerArg = PositionalSpec("provider", help: "provider id, e.g. acme")

    public static let spec = CommandSpec(
        "vgw", summary: "manage a VirtualGateway home gateway (vgwd)", options: global,
        subcommands: [
            CommandSpec(
                "provider", summary: "manage virtual gateways (one per provider)",
                subcommands: [
                    CommandSpec("create", summary: ManagementOperation.vgwCreate.summary, positionals: [providerArg]),
                    CommandSpec("delete", summary: ManagementOperation.vgwDelete.summary, positionals: [providerArg]),
                    CommandSpec("start", summary: ManagementOperation.vgwStart.summary, positionals: [providerArg]),
                    CommandSpec("stop", summary: ManagementOperation.vgwStop.summary, positionals: [providerArg]),
                    CommandSpec("list", summary: ManagementOperation.vgwList.summary),
                    CommandSpec("show", summary: ManagementOperation.vgwShow.summary, positionals: [providerArg]),
                    CommandSpec("alive", summary: ManagementOperation.vgwIsAlive.summary, positionals: [providerArg]),
                ]),
            CommandSpec(
                "client", summary: "manage broker credentials of providers' devices and apps",
                subcommands: [
                    CommandSpec(
                        "add", summary: ManagementOperation.clientAdd.summary,
                        positionals: [providerArg, PositionalSpec("name", help: "client name, e.g. thermostat")]),
                    CommandSpec(
                        "remove", summary: ManagementOperation.clientRemove.summary,
                        positionals: [providerArg, PositionalSpec("name", help: "client name")]),
                    CommandSpec(
                        "list", summary: ManagementOperation.clientList.summary,
                        positionals: [PositionalSpec("provider", help: "only this provider's clients", optional: true)]),
                ]),
            CommandSpec("status", summary: ManagementOperation.gatewayStatus.summary),
            CommandSpec(
                "request", summary: "send any management request and print the JSON response",
                positionals: [PositionalSpec("op", help: "operation, e.g. vgw.list (see docs/protocol.md)")],
                options: [
                    .value(
                        "--arg", "-a", name: "key=value",
                        help: "an argument (repeatable; value parsed as JSON when it is)", repeatable: true),
                    .value("--target", name: "provider", help: "send to mgmt/<provider>/req instead of mgmt/core/req"),
                ]),
            CommandSpec("version", summary: "print the version"),
        ])

    /// Runs one command line; returns the exit status. Output goes through `out` and `err`
    /// so tests can read it.
    public static func run(
        _ arguments: [String], out: @Sendable (String) -> Void = { print($0) },
        err: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    ) async -> Int32 {
        let parsed: ParsedArguments
        do {
            parsed = try ArgumentParser.parse(arguments, root: spec)
        } catch {
            err("error: \(message(of: error))")
            err("run 'vgw --help' for usage")
            return 2
        }
        if parsed.helpRequested || parsed.path.isEmpty || isGroup(parsed.path) {
            out(ArgumentParser.help(for: parsed.path, root: spec))
            return parsed.helpRequested ? 0 : 2
        }
        if parsed.path == ["version"] {
            out("vgw \(Version.current)")
            return 0
        }
        do {
            let json = parsed.flag("--json")
            let timeout = try parsed.int("--timeout").map { Duration.seconds($0) } ?? .seconds(10)
            let directory = DataDirectory(parsed.value("--data-dir") ?? GatewayConfiguration.defaultDataDirectory())
            let credentials = try OperatorCredentials.load(from: directory.operatorCredentials)
            let target = try parsed.value("--target").map { try ProviderID($0) } ?? .core
            let client = try await ManagementClient.connect(
                host: credentials.host, port: credentials.port, username: credentials.username,
                password: credentials.password, target: target, timeout: timeout)
            defer { Task { await client.close() } }
            let (op, args) = try request(for: parsed)
            let response = try await client.send(op.rawValue, args)
            if parsed.path == ["request"] {
                out(String(decoding: try response.encoded(), as: UTF8.self))
                return response.ok ? 0 : 1
            }
            let result = try response.get()
            out(json ? pretty(result) : Render.human(op, result))
            await client.close()
            return 0
        } catch {
            err("error: \(message(of: error))")
            return 1
        }
    }

    static func isGroup(_ path: [String]) -> Bool {
        var command = spec
        for name in path {
            guard let next = command.subcommands.first(where: { $0.name == name }) else { return false }
            command = next
        }
        return !command.subcommands.isEmpty
    }

    static func request(for parsed: ParsedArguments) throws -> (ManagementOperation, [String: JSONValue]) {
        let p = parsed.positionals
        func provider(_ index: Int = 0) -> [String: JSONValue] { ["provider": .string(p[index])] }
        switch parsed.path {
        case ["provider", "create"]: return (.vgwCreate, provider())
        case ["provider", "delete"]: return (.vgwDelete, provider())
        case ["provider", "start"]: return (.vgwStart, provider())
        case ["provider", "stop"]: return (.vgwStop, provider())
        case ["provider", "list"]: return (.vgwList, [:])
        case ["provider", "show"]: return (.vgwShow, provider())
        case ["provider", "alive"]: return (.vgwIsAlive, provider())
        case ["client", "add"]: return (.clientAdd, ["provider": .string(p[0]), "name": .string(p[1])])
        case ["client", "remove"]: return (.clientRemove, ["provider": .string(p[0]), "name": .string(p[1])])
        case ["client", "list"]: return (.clientList, p.isEmpty ? [:] : provider())
        case ["status"]: return (.gatewayStatus, [:])
        case ["request"]:
            guard let op = ManagementOperation(rawValue: p[0]) else {
                throw VGWError(
                    .usage,
                    "unknown op \(p[0]); known: \(ManagementOperation.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            var args: [String: JSONValue] = [:]
            for pair in parsed.values("--arg") {
                guard let equals = pair.firstIndex(of: "=") else {
                    throw VGWError(.usage, "--arg expects key=value, got '\(pair)'")
                }
                let value = String(pair[pair.index(after: equals)...])
                args[String(pair[..<equals])] =
                    (try? JSONCoding.decoder.decode(JSONValue.self, from: Data(value.utf8))) ?? .string(value)
            }
            return (op, args)
        default:
            throw VGWError(.usage, "unknown command \(parsed.path.joined(separator: " "))")
        }
    }

    static func pretty(_ value: JSONValue) -> String {
        let encoder = JSONCoding.encoder
        encoder.outputFormatting.insert(.prettyPrinted)
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "null"
    }

    static func message(of error: any Error) -> String {
        if let error = error as? VGWError { return "\(error.message) (\(error.code))" }
        return "\(error)"
    }
}

/// Human output for each op: tables for lists, a sentence or key/value lines otherwise.
enum Render {
    static func human(_ op: ManagementOperation, _ result: JSONValue) -> String {
        switch op {
        case .vgwList:
            let rows = (result["providers"]?.arrayValue ?? []).map { p in
                [
                    p["provider"]?.stringValue ?? "", p["state"]?.stringValue ?? "",
                    String(p["clients"]?.intValue ?? 0), p["createdAt"]?.stringValue ?? "",
                ]
            }
            return rows.isEmpty
                ? "no virtual gateways"
                : Table(headers: ["provider", "state", "clients", "created"], rows: rows).render()
        case .clientList:
            let rows = (result["clients"]?.arrayValue ?? []).map { c in
                [
                    c["provider"]?.stringValue ?? "", c["name"]?.stringValue ?? "", c["username"]?.stringValue ?? "",
                    c["createdAt"]?.stringValue ?? "",
                ]
            }
            return rows.isEmpty
                ? "no clients" : Table(headers: ["provider", "name", "username", "created"], rows: rows).render()
        case .clientAdd:
            return """
                client \(result["username"]?.stringValue ?? "") created. The password is shown only once:

                  host:       \(result["host"]?.stringValue ?? "")
                  port:       \(result["port"]?.intValue ?? 0)
                  username:   \(result["username"]?.stringValue ?? "")
                  client id:  \(result["clientId"]?.stringValue ?? "")
                  password:   \(result["password"]?.stringValue ?? "")
                  topics:     \(result["topicPrefix"]?.stringValue ?? "")#
                """
        case .vgwCreate, .vgwStart, .vgwStop:
            return "virtual gateway \(result["provider"]?.stringValue ?? "") is \(result["state"]?.stringValue ?? "")"
        case .vgwDelete:
            return
                "virtual gateway \(result["provider"]?.stringValue ?? "") deleted (\(result["clientsRemoved"]?.intValue ?? 0) clients removed)"
        case .vgwIsAlive:
            return
                "\(result["provider"]?.stringValue ?? ""): \(result["alive"]?.boolValue == true ? "alive" : "stopped")"
        case .clientRemove:
            return "client \(result["provider"]?.stringValue ?? "").\(result["name"]?.stringValue ?? "") removed"
        case .vgwShow, .gatewayStatus:
            return keyValues(result)
        }
    }

    static func keyValues(_ value: JSONValue, indent: String = "") -> String {
        guard let object = value.objectValue else { return indent + scalar(value) }
        return object.keys.sorted().map { key in
            let item = object[key] ?? .null
            if item.objectValue != nil { return "\(indent)\(key):\n" + keyValues(item, indent: indent + "  ") }
            return "\(indent)\(key): \(scalar(item))"
        }.joined(separator: "\n")
    }

    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): s
        case .number: value.intValue.map(String.init) ?? "\(value.numberValue ?? 0)"
        case .bool(let b): b ? "yes" : "no"
        case .null: "-"
        case .array(let items): items.map(scalar).joined(separator: ", ")
        case .object: VGWCommand.pretty(value)
        }
    }
}
