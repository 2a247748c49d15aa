import BundleFormat
import Crypto
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
    static let bundleArg = PositionalSpec("bundle", help: "bundle name, from its manifest")

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
            CommandSpec(
                "bundle", summary: "deploy and run providers' services",
                subcommands: [
                    CommandSpec(
                        "install", summary: ManagementOperation.bundleInstall.summary,
                        positionals: [providerArg, PositionalSpec("archive", help: "bundle archive (.tar.gz)")],
                        options: [.flag("--start", help: "start it once installed")]),
                    CommandSpec(
                        "uninstall", summary: ManagementOperation.bundleUninstall.summary,
                        positionals: [providerArg, bundleArg]),
                    CommandSpec(
                        "start", summary: ManagementOperation.bundleStart.summary,
                        positionals: [providerArg, bundleArg]),
                    CommandSpec(
                        "stop", summary: ManagementOperation.bundleStop.summary, positionals: [providerArg, bundleArg]),
                    CommandSpec("list", summary: ManagementOperation.bundleList.summary, positionals: [providerArg]),
                    CommandSpec(
                        "alive", summary: ManagementOperation.bundleIsAlive.summary,
                        positionals: [providerArg, bundleArg]),
                    CommandSpec(
                        "logs", summary: ManagementOperation.bundleLogs.summary, positionals: [providerArg, bundleArg],
                        options: [
                            .value("--lines", "-n", name: "n", help: "how many lines (default 100, at most 1000)")
                        ]),
                    CommandSpec(
                        "pack",
                        summary: "build a bundle archive from a directory holding manifest.json (no daemon needed)",
                        positionals: [PositionalSpec("directory", help: "the bundle's files")],
                        options: [
                            .value(
                                "--output", "-O", name: "file",
                                help: "archive to write (default <name>-<version>.tar.gz)")
                        ]),
                    FleetCommand.bundleSign,
                ]),
            CommandSpec(
                "grant", summary: "share part of a provider's namespace with another provider",
                subcommands: [
                    CommandSpec(
                        "create", summary: ManagementOperation.grantCreate.summary,
                        positionals: [
                            PositionalSpec("owner", help: "provider whose topics are shared (or core)"),
                            PositionalSpec("grantee", help: "provider who gets access, or '*' for every provider"),
                            PositionalSpec("filter", help: "topic filter under vgw/<owner>/, e.g. thermo/state/#"),
                        ],
                        options: [.value("--access", name: "mode", help: "read (default), write or readwrite")]),
                    CommandSpec(
                        "revoke", summary: ManagementOperation.grantRevoke.summary,
                        positionals: [PositionalSpec("id", help: "grant id, from vgw grant list")]),
                    CommandSpec(
                        "list", summary: ManagementOperation.grantList.summary,
                        positionals: [
                            PositionalSpec("provider", help: "only grants it gave or received", optional: true)
                        ]),
                ]),
            CommandSpec(
                "apply", summary: "make the gateway match a policy file (providers, clients, grants)",
                options: [
                    .value("--file", "-f", name: "policy.json", help: "the policy (see config/policy.example.json)"),
                    .flag("--dry-run", help: "print the changes, make none"),
                    .flag("--prune", help: "also remove providers, clients and grants the file does not have"),
                ]),
            CommandSpec(
                "export", summary: "write the current state as a policy file",
                options: [.value("--output", "-O", name: "file", help: "write there instead of standard output")]),
            CommandSpec(
                "perf", summary: ManagementOperation.perfGet.summary, positionals: [providerArg],
                options: [.value("--bundle", "-b", name: "name", help: "only this bundle")]),
            CommandSpec(
                "top", summary: "live CPU, memory, pids and traffic of every VGW (like docker stats)",
                options: [.flag("--once", help: "print one table and exit")]),
            CommandSpec(
                "acct", summary: "accounting: providers' events and their services' running time",
                subcommands: [
                    CommandSpec(
                        "notify", summary: ManagementOperation.acctNotify.summary,
                        positionals: [
                            providerArg, PositionalSpec("kind", help: "event kind, 1 to 64 of a-z 0-9 . _ -"),
                        ],
                        options: [
                            .value("--detail", name: "json", help: "a JSON object (at most 4 KiB encoded)"),
                            .value("--bundle", "-b", name: "name", help: "the bundle the event is about"),
                        ]),
                    CommandSpec(
                        "usage", summary: ManagementOperation.acctUsage.summary, positionals: [providerArg],
                        options: [
                            .value("--from", name: "date", help: "ISO 8601 start (included; default: the beginning)"),
                            .value("--to", name: "date", help: "ISO 8601 end (excluded; default: now)"),
                            .value("--bundle", "-b", name: "name", help: "only this bundle"),
                            .flag("--csv", help: "print CSV (events, runs and totals) instead of tables"),
                        ]),
                ]),
            CommandSpec(
                "quota", summary: "limit what a provider may publish (enforced in the broker)",
                subcommands: [
                    CommandSpec(
                        "set", summary: ManagementOperation.quotaSet.summary, positionals: [providerArg],
                        options: [
                            .value("--messages", name: "per-second", help: "messages per second (0 = unlimited)"),
                            .value("--bytes", name: "per-second", help: "payload bytes per second (0 = unlimited)"),
                        ]),
                    CommandSpec("get", summary: ManagementOperation.quotaGet.summary, positionals: [providerArg]),
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
            CommandSpec(
                "demo", summary: "a narrated tour: two providers, isolation, a grant, its revocation (needs no daemon)"),
            CommandSpec("version", summary: "print the version"),
        ] + FleetCommand.specs)

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
        if parsed.path == ["demo"] {
            do {
                try await Demo.run(out: out)
                return 0
            } catch {
                err("error: \(message(of: error))")
                return 1
            }
        }
        if let status = await FleetCommand.run(parsed, out: out, err: err) {
            return status
        }
        if parsed.path == ["bundle", "pack"] {
            return pack(parsed, out: out, err: err)
        }
        do {
            return try await withClient(parsed) { client in
                switch parsed.path {
                case ["apply"]: return try await apply(parsed, client, out: out)
                case ["export"]: return try await export(parsed, client, out: out)
                case ["top"]: return try await Top.run(client, once: parsed.flag("--once"), out: out)
                default: break
                }
                let (op, args) = try request(for: parsed)
                let response = try await client.send(op.rawValue, args)
                if parsed.path == ["request"] {
                    out(String(decoding: try response.encoded(), as: UTF8.self))
                    return response.ok ? 0 : 1
                }
                let result = try response.get()
                out(parsed.flag("--json") ? pretty(result) : Render.human(op, result))
                return 0
            }
        } catch {
            err("error: \(message(of: error))")
            return 1
        }
    }

    /// Connects as the operator (credentials from the data directory), runs `body`, and
    /// always closes the connection.
    static func withClient(_ parsed: ParsedArguments, _ body: (ManagementClient) async throws -> Int32) async throws
        -> Int32
    {
        let timeout = try parsed.int("--timeout").map { Duration.seconds($0) } ?? .seconds(10)
        let directory = DataDirectory(parsed.value("--data-dir") ?? GatewayConfiguration.defaultDataDirectory())
        let credentials = try OperatorCredentials.load(from: directory.operatorCredentials)
        let target = try parsed.value("--target").map { try ProviderID($0) } ?? .core
        let client = try await ManagementClient.connect(
            host: credentials.host, port: credentials.port, username: credentials.username,
            password: credentials.password, target: target, timeout: timeout)
        do {
            let status = try await body(client)
            await client.close()
            return status
        } catch {
            await client.close()
            throw error
        }
    }

    /// `vgw apply -f policy.json [--dry-run] [--prune]`.
    static func apply(_ parsed: ParsedArguments, _ client: ManagementClient, out: (String) -> Void) async throws
        -> Int32
    {
        guard let file = parsed.value("--file") else { throw VGWError(.usage, "apply needs -f <policy.json>") }
        guard let data = FileManager.default.contents(atPath: file) else { throw VGWError(.io, "cannot read \(file)") }
        let wanted = try PolicyDocument.decode(data)
        let (current, ids) = try await client.exportPolicy()
        let prune = parsed.flag("--prune")
        let steps = PolicyPlanner.plan(current: current, grantIDs: ids, wanted: wanted, prune: prune)
        let extras = prune ? [] : PolicyPlanner.extras(current: current, wanted: wanted)
        if steps.isEmpty { out("the gateway already matches \(file)") }
        for step in steps {
            if parsed.flag("--dry-run") {
                out(step.description)
                continue
            }
            let result = try await client.call(step.op.rawValue, step.args)
            if step.op == .clientAdd, let password = result["password"]?.stringValue {
                out("\(step.description)  password: \(password)  (shown once)")
            } else {
                out(step.description)
            }
        }
        for extra in extras { out("= \(extra) (not in the file; kept, use --prune to remove)") }
        if parsed.flag("--dry-run"), !steps.isEmpty { out("dry run: \(steps.count) changes not applied") }
        return 0
    }

    /// `vgw export [-O file]`: the current state in the policy format.
    static func export(_ parsed: ParsedArguments, _ client: ManagementClient, out: (String) -> Void) async throws
        -> Int32
    {
        let document = try await client.exportPolicy().document
        let data = try document.encoded()
        if let path = parsed.value("--output") {
            guard FileManager.default.createFile(atPath: path, contents: data) else {
                throw VGWError(.io, "cannot write \(path)")
            }
            out("wrote \(path)")
        } else {
            out(String(decoding: data, as: UTF8.self))
        }
        return 0
    }

    /// `vgw bundle pack DIR`: a deterministic archive, checked the way the daemon checks it.
    static func pack(_ parsed: ParsedArguments, out: (String) -> Void, err: (String) -> Void) -> Int32 {
        do {
            let archive = try BundleArchive.pack(directory: parsed.positionals[0])
            let manifest = try BundleArchive.inspect(archive: archive)
            let path = parsed.value("--output") ?? "\(manifest.name)-\(manifest.version).tar.gz"
            guard FileManager.default.createFile(atPath: path, contents: Data(archive)) else {
                throw VGWError(.io, "cannot write \(path)")
            }
            out(
                "wrote \(path) (\(archive.count) bytes): \(manifest.name) \(manifest.version), runs \(manifest.command)"
            )
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
        case ["bundle", "install"]:
            guard let archive = FileManager.default.contents(atPath: p[1]) else {
                throw VGWError(.io, "cannot read \(p[1])")
            }
            var args: [String: JSONValue] = [
                "provider": .string(p[0]), "archive": .string(Base64.encode(Array(archive))),
            ]
            if parsed.flag("--start") { args["start"] = true }
            return (.bundleInstall, args)
        case ["bundle", "uninstall"]: return (.bundleUninstall, ["provider": .string(p[0]), "name": .string(p[1])])
        case ["bundle", "start"]: return (.bundleStart, ["provider": .string(p[0]), "name": .string(p[1])])
        case ["bundle", "stop"]: return (.bundleStop, ["provider": .string(p[0]), "name": .string(p[1])])
        case ["bundle", "list"]: return (.bundleList, provider())
        case ["bundle", "alive"]: return (.bundleIsAlive, ["provider": .string(p[0]), "name": .string(p[1])])
        case ["bundle", "logs"]:
            var args: [String: JSONValue] = ["provider": .string(p[0]), "name": .string(p[1])]
            if let lines = try parsed.int("--lines") { args["lines"] = .number(Double(lines)) }
            return (.bundleLogs, args)
        case ["grant", "create"]:
            return (
                .grantCreate,
                [
                    "owner": .string(p[0]), "grantee": .string(p[1]), "filter": .string(p[2]),
                    "access": .string(parsed.value("--access") ?? "read"),
                ]
            )
        case ["grant", "revoke"]:
            guard let id = Int(p[0]) else { throw VGWError(.usage, "grant id must be a number, got '\(p[0])'") }
            return (.grantRevoke, ["id": .number(Double(id))])
        case ["grant", "list"]: return (.grantList, p.isEmpty ? [:] : provider())
        case ["perf"]:
            var args = provider()
            if let bundle = parsed.value("--bundle") { args["bundle"] = .string(bundle) }
            return (.perfGet, args)
        case ["acct", "notify"]:
            var args: [String: JSONValue] = ["provider": .string(p[0]), "kind": .string(p[1])]
            if let detail = parsed.value("--detail") {
                guard let value = try? JSONCoding.decoder.decode(JSONValue.self, from: Data(detail.utf8)),
                    value.objectValue != nil
                else { throw VGWError(.usage, "--detail must be a JSON object, e.g. '{\"units\": 3}'") }
                args["detail"] = value
            }
            if let bundle = parsed.value("--bundle") { args["bundle"] = .string(bundle) }
            return (.acctNotify, args)
        case ["acct", "usage"]:
            var args = provider()
            for name in ["from", "to", "bundle"] {
                if let value = parsed.value("--" + name) { args[name] = .string(value) }
            }
            if parsed.flag("--csv") { args["format"] = "csv" }
            return (.acctUsage, args)
        case ["quota", "set"]:
            var args = provider()
            if let messages = try parsed.int("--messages") { args["messagesPerSecond"] = .number(Double(messages)) }
            if let bytes = try parsed.int("--bytes") { args["bytesPerSecond"] = .number(Double(bytes)) }
            return (.quotaSet, args)
        case ["quota", "get"]: return (.quotaGet, provider())
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
        case .vgwShow, .gatewayStatus, .quotaSet, .quotaGet, .securitySetCredential, .securityChallenge:
            return keyValues(result)
        case .perfGet:
            return Top.perf(result)
        case .acctNotify:
            return "event \(result["id"]?.intValue ?? 0) recorded: \(result["kind"]?.stringValue ?? "")"
        case .acctUsage:
            return Top.usage(result)
        case .bundleInstall:
            let verb = result["replaced"]?.boolValue == true ? "replaced" : "installed"
            return
                "bundle \(result["name"]?.stringValue ?? "") \(result["version"]?.stringValue ?? "") \(verb) (\(result["state"]?.stringValue ?? ""))"
        case .bundleUninstall:
            return "bundle \(result["name"]?.stringValue ?? "") uninstalled"
        case .bundleStart, .bundleStop:
            return "bundle \(result["bundle"]?.stringValue ?? "") is \(result["state"]?.stringValue ?? "")"
        case .bundleList:
            let rows = (result["bundles"]?.arrayValue ?? []).map { b in
                [
                    b["name"]?.stringValue ?? "", b["version"]?.stringValue ?? "", b["state"]?.stringValue ?? "",
                    b["desired"]?.stringValue ?? "", String(b["restarts"]?.intValue ?? 0),
                    b["pid"]?.intValue.map(String.init) ?? "-", b["lastExit"]?.stringValue ?? "-",
                ]
            }
            return rows.isEmpty
                ? "no bundles"
                : Table(headers: ["name", "version", "state", "desired", "restarts", "pid", "last exit"], rows: rows)
                    .render()
        case .grantCreate, .grantOffer:
            return
                "grant \(result["id"]?.intValue ?? 0): \(result["grantee"]?.stringValue ?? "") may \(result["access"]?.stringValue ?? "") vgw/\(result["owner"]?.stringValue ?? "")/\(result["filter"]?.stringValue ?? "")"
        case .grantRevoke:
            return "grant \(result["id"]?.intValue ?? 0) revoked"
        case .grantList:
            let rows = (result["grants"]?.arrayValue ?? []).map { g in
                [
                    String(g["id"]?.intValue ?? 0), g["owner"]?.stringValue ?? "", g["grantee"]?.stringValue ?? "",
                    "vgw/\(g["owner"]?.stringValue ?? "")/\(g["filter"]?.stringValue ?? "")",
                    g["access"]?.stringValue ?? "",
                ]
            }
            return rows.isEmpty
                ? "no grants" : Table(headers: ["id", "owner", "grantee", "topics", "access"], rows: rows).render()
        case .bundleIsAlive:
            return
                "\(result["name"]?.stringValue ?? ""): \(result["alive"]?.boolValue == true ? "alive" : "not running")"
        case .bundleLogs:
            return [
                result["stdout"]?.stringValue.map { $0.isEmpty ? nil : "--- stdout\n" + $0 } ?? nil,
                result["stderr"]?.stringValue.map { $0.isEmpty ? nil : "--- stderr\n" + $0 } ?? nil,
            ].compactMap { $0 }.joined(separator: "\n")
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
