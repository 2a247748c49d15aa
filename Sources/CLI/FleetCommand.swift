import Broker
import Crypto
import Fleet
import Foundation
import MQTT
import Protocol
import Support
import Synchronization

/// The provider's and the cloud operator's commands: keys, signed bundles, fleet requests
/// through the cloud broker, and the cloud broker's provisioning. None talks to a local vgwd.
enum FleetCommand {
    static let cloudOption = OptionSpec.value(
        "--cloud", name: "url",
        help: "the cloud broker, mqtt://host:port or mqtts://host:port with --ca (default mqtt://127.0.0.1:1883)")

    static let specs: [CommandSpec] = [
        CommandSpec(
            "keygen", summary: "create an Ed25519 key pair: NAME.key (secret, 0600) and NAME.pub",
            options: [.value("--out", name: "name", help: "file name without extension, e.g. acme")]),
        CommandSpec(
            "fleet", summary: "send signed management requests to many homes through the cloud broker",
            options: [
                cloudOption,
                .value("--ca", name: "file", help: "with mqtts://: the CA certificate of the cloud broker"),
                .value("--cert", name: "file", help: "with mqtts://: a client certificate, if the cloud wants one"),
                .value("--cert-key", name: "file", help: "with mqtts://: that certificate's key"),
                .value("--provider", name: "id", help: "the provider whose key signs, e.g. acme"),
                .value("--key", name: "file", help: "the provider's secret key (from vgw keygen)"),
                .value("--username", name: "name", help: "cloud username (default provider.<id>)"),
                .value(
                    "--password-file", name: "file", help: "file holding the cloud password (or $VGW_CLOUD_PASSWORD)"),
            ],
            subcommands: [
                CommandSpec(
                    "run", summary: "run one operation on a set of homes; exit 0 only if every home answered ok",
                    positionals: [PositionalSpec("op", help: "operation, e.g. vgw.list (see docs/protocol.md)")],
                    options: [
                        .value("--homes", name: "list", help: "all (default), h1,h2 or @file (one id per line)"),
                        .value(
                            "--expect", name: "list", help: "with --homes all: the homes to wait for, h1,h2 or @file"),
                        .value("--valid-for", name: "seconds", help: "how long the signature is valid (default 60)"),
                        .value(
                            "--arg", "-a", name: "key=value",
                            help: "an argument (repeatable; value parsed as JSON when it is)", repeatable: true),
                        .value(
                            "--archive", name: "file",
                            help: "bundle.install: the archive; its signature from FILE.sig or signed with --key"),
                    ])
            ]),
        CommandSpec(
            "cloud", summary: "provision the cloud broker of a fleet (dynamic security)",
            options: [
                cloudOption,
                .value("--admin", name: "name", help: "the cloud broker's dynsec admin (default admin)"),
                .value("--admin-password-file", name: "file", help: "file holding the admin's password"),
            ],
            subcommands: [
                CommandSpec(
                    "init", summary: "write mosquitto.conf and dynamic-security.json for a cloud broker",
                    options: [
                        .value("--dir", name: "dir", help: "where to write them"),
                        .value("--port", name: "port", help: "listener port (default 1883)"),
                    ]),
                CommandSpec(
                    "add-home", summary: "create (or reset) a home's bridge identity and print its password",
                    positionals: [PositionalSpec("home", help: "home id")]),
                CommandSpec(
                    "add-provider", summary: "create (or reset) a provider's cloud identity and print its password",
                    positionals: [PositionalSpec("provider", help: "provider id")]),
            ]),
    ]

    static let bundleSign = CommandSpec(
        "sign", summary: "sign a bundle archive with a provider's key: writes ARCHIVE.sig (no daemon needed)",
        positionals: [PositionalSpec("archive", help: "bundle archive (.tar.gz)")],
        options: [.value("--key", name: "file", help: "the secret key (from vgw keygen)")])

    /// Runs the command if it is one of these; nil otherwise.
    static func run(_ parsed: ParsedArguments, out: @Sendable (String) -> Void, err: @Sendable (String) -> Void) async
        -> Int32?
    {
        do {
            switch parsed.path {
            case ["keygen"]: return try keygen(parsed, out: out)
            case ["bundle", "sign"]: return try sign(parsed, out: out)
            case ["fleet", "run"]: return try await fleetRun(parsed, out: out, err: err)
            case ["cloud", "init"]: return try await cloudInit(parsed, out: out)
            case ["cloud", "add-home"], ["cloud", "add-provider"]: return try await cloudAdd(parsed, out: out)
            default: return nil
            }
        } catch {
            err("error: \(VGWCommand.message(of: error))")
            return 1
        }
    }

    // MARK: - Keys and signatures

    static func keygen(_ parsed: ParsedArguments, out: (String) -> Void) throws -> Int32 {
        guard let name = parsed.value("--out") else { throw VGWError(.usage, "keygen needs --out NAME") }
        let keys = try Ed25519.KeyPair.generate()
        try writeFile(Base64.encode(keys.secretKey) + "\n", to: name + ".key", mode: 0o600, exclusive: true)
        try writeFile(Base64.encode(keys.publicKey) + "\n", to: name + ".pub", mode: 0o644, exclusive: true)
        out(Base64.encode(keys.publicKey))
        return 0
    }

    public static func loadKey(_ path: String) throws -> Ed25519.KeyPair {
        guard let secret = Base64.decode(try readText(path)) else {
            throw VGWError(.invalidArgument, "\(path) does not hold a base64 key")
        }
        return try Ed25519.KeyPair(secretKey: secret)
    }

    static func sign(_ parsed: ParsedArguments, out: (String) -> Void) throws -> Int32 {
        guard let keyFile = parsed.value("--key") else { throw VGWError(.usage, "bundle sign needs --key FILE") }
        let archive = parsed.positionals[0]
        let signature = try signArchive(try readBytes(archive), keys: try loadKey(keyFile))
        try writeFile(signature + "\n", to: archive + ".sig", mode: 0o644, exclusive: false)
        out("wrote \(archive).sig")
        return 0
    }

    /// A bundle's signature: Ed25519 over the archive's bytes, base64.
    public static func signArchive(_ bytes: [UInt8], keys: Ed25519.KeyPair) throws -> String {
        Base64.encode(try keys.sign(bytes))
    }

    // MARK: - fleet run

    static func fleetRun(_ parsed: ParsedArguments, out: @Sendable (String) -> Void, err: @Sendable (String) -> Void)
        async throws -> Int32
    {
        guard let provider = parsed.value("--provider") else { throw VGWError(.usage, "fleet needs --provider ID") }
        guard let keyFile = parsed.value("--key") else { throw VGWError(.usage, "fleet needs --key FILE") }
        let keys = try loadKey(keyFile)
        let ((host, port), tls) = try cloudEndpoint(parsed)
        let password: String
        if let file = parsed.value("--password-file") {
            password = try readText(file)
        } else if let value = ProcessInfo.processInfo.environment["VGW_CLOUD_PASSWORD"] {
            password = value
        } else {
            throw VGWError(.usage, "fleet needs --password-file FILE or $VGW_CLOUD_PASSWORD")
        }
        let homes = try list(parsed.value("--homes") ?? FleetTopics.allHomes)
        let expected = try parsed.value("--expect").map(list)
        let timeout = try parsed.int("--timeout") ?? 10
        let validFor = try parsed.int("--valid-for") ?? 60
        let op = parsed.positionals[0]
        var args = try arguments(parsed.values("--arg"))
        if let archive = parsed.value("--archive") {
            let bytes = try readBytes(archive)
            args["archive"] = .string(Base64.encode(bytes))
            let signatureFile = archive + ".sig"
            args["signature"] = .string(
                FileManager.default.fileExists(atPath: signatureFile)
                    ? try readText(signatureFile) : try signArchive(bytes, keys: keys))
        }
        let target = FleetTarget(homes: homes, expected: expected)
        let fleet = try await FleetClient.connect(
            host: host, port: port, username: parsed.value("--username") ?? CloudACLs.providerUsername(provider),
            password: password, provider: provider, keys: keys, tls: tls)
        let results = await withoutActuallyEscaping(err) { err in
            let reporter = ProgressReporter(terminal: isatty(STDERR_FILENO) == 1, err: err)
            let results = await fleet.run(
                op: op, args: args, target: target, timeout: .seconds(timeout), validFor: Int64(validFor),
                progress: { reporter.report($0) })
            reporter.finish()
            return results
        }
        await fleet.close()
        out(parsed.flag("--json") ? try json(results) : table(results))
        let allOK = !results.isEmpty && results.allSatisfy { $0.ok }
        return allOK ? 0 : 1
    }

    /// `h1,h2`, `all` or `@file` (one id per line, `#` comments).
    static func list(_ text: String) throws -> [String] {
        let source = text.hasPrefix("@") ? try readText(String(text.dropFirst())) : text
        return source.split(whereSeparator: { $0 == "," || $0 == "\n" }).map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    static func arguments(_ pairs: [String]) throws -> [String: JSONValue] {
        var args: [String: JSONValue] = [:]
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "=") else {
                throw VGWError(.usage, "--arg expects key=value, got '\(pair)'")
            }
            let value = String(pair[pair.index(after: equals)...])
            args[String(pair[..<equals])] =
                (try? JSONCoding.decoder.decode(JSONValue.self, from: Data(value.utf8))) ?? .string(value)
        }
        return args
    }

    static func table(_ results: [HomeResult]) -> String {
        let rows = results.map { result -> [String] in
            let status = result.ok ? "ok" : (result.error?.code.rawValue ?? "error")
            let latency = result.latency.map { "\(Int($0 / .milliseconds(1))) ms" } ?? "-"
            var detail = result.ok ? compact(result.response?.result ?? .null) : (result.error?.message ?? "")
            if detail.count > 60 { detail = String(detail.prefix(57)) + "..." }
            return [result.home, status, latency, String(result.attempts), detail]
        }
        let failed = results.filter { !$0.ok }.count
        return Table(headers: ["home", "status", "latency", "sends", "result"], rows: rows).render()
            + "\n\(results.count - failed)/\(results.count) ok, \(failed) failed"
    }

    static func compact(_ value: JSONValue) -> String {
        if case .string(let text) = value { return text }
        return (try? String(decoding: JSONCoding.encoder.encode(value), as: UTF8.self)) ?? "-"
    }

    static func json(_ results: [HomeResult]) throws -> String {
        let items: [JSONValue] = results.map { result in
            var object: [String: JSONValue] = ["home": .string(result.home), "ok": .bool(result.ok)]
            if let result = result.response?.result { object["result"] = result }
            if let error = result.error {
                object["error"] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
            }
            if let latency = result.latency { object["latencyMs"] = .number(Double(latency / .milliseconds(1))) }
            object["attempts"] = .number(Double(result.attempts))
            return .object(object)
        }
        return VGWCommand.pretty(.array(items))
    }

    // MARK: - cloud

    static func cloudInit(_ parsed: ParsedArguments, out: (String) -> Void) async throws -> Int32 {
        guard let directory = parsed.value("--dir") else { throw VGWError(.usage, "cloud init needs --dir DIR") }
        let port = try parsed.int("--port") ?? 1883
        guard let port = UInt16(exactly: port), port > 0 else { throw VGWError(.usage, "--port must be 1 to 65535") }
        let admin = parsed.value("--admin") ?? "admin"
        let given = try parsed.value("--admin-password-file").map(readText)
        let password = try given ?? SecureRandom.token(bytes: 24)
        let absolute = URL(fileURLWithPath: directory).standardizedFileURL.path
        try await CloudInit.write(directory: absolute, port: port, admin: admin, password: password)
        out("wrote \(absolute)/mosquitto.conf and \(absolute)/dynamic-security.json")
        if given == nil { out("admin \(admin) password (shown once): \(password)") }
        out("start it with: mosquitto -c \(absolute)/mosquitto.conf")
        return 0
    }

    static func cloudAdd(_ parsed: ParsedArguments, out: (String) -> Void) async throws -> Int32 {
        guard let file = parsed.value("--admin-password-file") else {
            throw VGWError(.usage, "\(parsed.path.joined(separator: " ")) needs --admin-password-file FILE")
        }
        let (host, port) = try cloudAddress(parsed)
        let admin = try await CloudAdmin.connect(
            host: host, port: port, username: parsed.value("--admin") ?? "admin", password: try readText(file))
        let id = parsed.positionals[0]
        do {
            if parsed.path == ["cloud", "add-home"] {
                let password = try await admin.addHome(id)
                out("home \(id): username \(CloudACLs.homeUsername(id)), client id \(CloudACLs.homeClientID(id))")
                out("password (shown once): \(password)")
            } else {
                let password = try await admin.addProvider(id)
                out("provider \(id): username \(CloudACLs.providerUsername(id))")
                out("password (shown once): \(password)")
            }
            await admin.close()
            return 0
        } catch {
            await admin.close()
            throw error
        }
    }

    static func cloudAddress(_ parsed: ParsedArguments) throws -> (String, UInt16) {
        try cloudEndpoint(parsed).address
    }

    /// `mqtt://host:port`, or `mqtts://host:port` (default port 8883) with the CA in `--ca`
    /// and, when the cloud wants a client certificate, `--cert` and `--cert-key`.
    static func cloudEndpoint(_ parsed: ParsedArguments) throws -> (address: (String, UInt16), tls: MQTTTLS?) {
        let text = parsed.value("--cloud") ?? "mqtt://127.0.0.1:1883"
        guard let url = URL(string: text), url.scheme == "mqtt" || url.scheme == "mqtts", let host = url.host,
            !host.isEmpty
        else { throw VGWError(.usage, "--cloud expects mqtt://host:port or mqtts://host:port, got '\(text)'") }
        let secure = url.scheme == "mqtts"
        guard let port = UInt16(exactly: url.port ?? (secure ? 8883 : 1883)) else {
            throw VGWError(.usage, "bad port in \(text)")
        }
        guard secure else { return ((host, port), nil) }
        guard let ca = parsed.value("--ca") else { throw VGWError(.usage, "mqtts:// needs --ca FILE (the cloud's CA)") }
        return (
            (host, port), MQTTTLS(caFile: ca, certFile: parsed.value("--cert"), keyFile: parsed.value("--cert-key"))
        )
    }

    // MARK: - Files

    static func readText(_ path: String) throws -> String {
        String(decoding: try readBytes(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func readBytes(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VGWError(.notFound, "cannot read \(path)")
        }
        return Array(data)
    }

    static func writeFile(_ text: String, to path: String, mode: mode_t, exclusive: Bool) throws {
        if exclusive, FileManager.default.fileExists(atPath: path) {
            throw VGWError(.alreadyExists, "\(path) exists; not overwriting it")
        }
        try AtomicFile.write(Data(text.utf8), to: path, mode: mode)
    }
}

/// `answered 37/50, 2 failed`: rewritten in place on a terminal, one line per 10% otherwise.
final class ProgressReporter: Sendable {
    private struct State {
        var lastDecile = -1
        var line = ""
    }

    private let terminal: Bool
    private let err: @Sendable (String) -> Void
    private let state = Mutex(State())

    init(terminal: Bool, err: @escaping @Sendable (String) -> Void) {
        self.terminal = terminal
        self.err = err
    }

    func report(_ progress: FleetProgress) {
        let total = progress.expected.map(String.init) ?? "?"
        let line = "answered \(progress.answered)/\(total), \(progress.failed) failed"
        if terminal {
            state.withLock { $0.line = line }
            FileHandle.standardError.write(Data(("\r" + line).utf8))
            return
        }
        let decile = progress.expected.map { $0 == 0 ? 10 : progress.answered * 10 / $0 } ?? progress.answered / 10
        let print = state.withLock { state in
            defer { state.lastDecile = max(state.lastDecile, decile) }
            return decile > state.lastDecile
        }
        if print { err(line) }
    }

    func finish() {
        if terminal, !state.withLock({ $0.line.isEmpty }) { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
