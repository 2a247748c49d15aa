import Broker
import Dispatch
import Foundation
import Gateway
import Support

/// `vgwd`: runs the core gateway until SIGTERM or SIGINT, then drains and stops the broker.
public enum DaemonCommand {
    public static let spec = CommandSpec(
        "vgwd",
        summary: "the VirtualGateway core gateway: a supervised Mosquitto broker with isolated virtual gateways",
        options: [
            .value(
                "--data-dir", "-d", name: "dir",
                help: "state directory (default $VGW_DATA_DIR, $XDG_STATE_HOME/vgw or ./vgw-data)"),
            .value("--host", name: "address", help: "address the broker listens on (default 127.0.0.1)"),
            .value(
                "--port", "-p", name: "port",
                help: "broker port (default 1883; a taken default falls back to a free port)"),
            .value("--home", name: "id", help: "this home's id in responses (default: the host name)"),
            .value("--mosquitto", name: "path", help: "the mosquitto executable (default: found in /usr/sbin or PATH)"),
            .value("--max-request-bytes", name: "bytes", help: "largest management request accepted (default 1048576)"),
            .value("--max-bundle-bytes", name: "bytes", help: "largest bundle archive accepted (default 16777216)"),
            .value(
                "--service-uid-base", name: "uid",
                help: "services of the n-th provider run as uid base+n when vgwd is root (default 200000)"),
            .value("--log-level", name: "level", help: "debug, info, warn or error (default info)"),
            .value("--cloud", name: "host:port", help: "bridge this home to a cloud broker for remote management"),
            .value("--cloud-username", name: "user", help: "with --cloud: this home's identity there (home.<home>)"),
            .value("--cloud-password-file", name: "file", help: "with --cloud: file holding its password"),
            .value("--cloud-ca", name: "file", help: "with --cloud: CA certificate to trust (enables TLS)"),
            .value("--cloud-cert", name: "file", help: "with --cloud: this home's client certificate"),
            .value("--cloud-key", name: "file", help: "with --cloud: this home's client key"),
            .value(
                "--external-broker", name: "host:port",
                help: "use this running Mosquitto (with the dynamic security plugin) instead of starting one"),
            .value(
                "--broker-admin", name: "user", help: "with --external-broker: a client that may administer its plugin"),
            .value(
                "--broker-admin-password-file", name: "file",
                help: "with --external-broker: file holding that client's password"),
            .flag("--version", help: "print the version"),
        ])

    public static func run(_ arguments: [String]) async -> Int32 {
        let logger = Logger("vgwd")
        let configuration: GatewayConfiguration
        do {
            let parsed = try ArgumentParser.parse(arguments, root: spec)
            if parsed.helpRequested {
                print(ArgumentParser.help(for: [], root: spec))
                return 0
            }
            if parsed.flag("--version") {
                print("vgwd \(Version.current)")
                return 0
            }
            configuration = try makeConfiguration(parsed)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\nrun 'vgwd --help' for usage\n".utf8))
            return 2
        }
        let daemon = GatewayDaemon(configuration: configuration)
        let signals = SignalWaiter([SIGTERM, SIGINT])
        do {
            try await daemon.start()
        } catch {
            logger.error("cannot start", ["error": "\(error)"])
            return 1
        }
        let signal = await signals.next()
        logger.info("received \(signal == SIGINT ? "SIGINT" : "SIGTERM"), shutting down")
        await daemon.stop()
        return 0
    }

    static func makeConfiguration(_ parsed: ParsedArguments) throws -> GatewayConfiguration {
        var configuration = GatewayConfiguration(
            dataDirectory: parsed.value("--data-dir") ?? GatewayConfiguration.defaultDataDirectory())
        if let host = parsed.value("--host") { configuration.host = host }
        if let port = try parsed.int("--port") {
            guard (1...65535).contains(port) else { throw VGWError(.usage, "--port must be 1 to 65535") }
            configuration.port = UInt16(port)
            configuration.portFallback = false
        }
        if let home = parsed.value("--home") { configuration.homeID = home }
        if let path = parsed.value("--mosquitto") { configuration.mosquittoPath = path }
        if let bytes = try parsed.int("--max-request-bytes") {
            guard bytes > 0 else { throw VGWError(.usage, "--max-request-bytes must be positive") }
            configuration.maxRequestBytes = bytes
        }
        if let bytes = try parsed.int("--max-bundle-bytes") {
            guard bytes > 0 else { throw VGWError(.usage, "--max-bundle-bytes must be positive") }
            configuration.maxBundleBytes = bytes
        }
        if let base = try parsed.int("--service-uid-base") {
            guard (1000...4_000_000_000).contains(base) else {
                throw VGWError(.usage, "--service-uid-base must be 1000 to 4000000000")
            }
            configuration.serviceUIDBase = uid_t(base)
        }
        if let address = parsed.value("--cloud") {
            configuration.cloud = try cloud(address, parsed, homeID: configuration.homeID)
        }
        if let address = parsed.value("--external-broker") {
            configuration.externalBroker = try externalBroker(address, parsed)
        }
        if let name = parsed.value("--log-level") {
            guard let level = Logger.Level(name: name) else {
                throw VGWError(.usage, "--log-level must be debug, info, warn or error")
            }
            Logger.threshold.withLock { $0 = level }
        }
        return configuration
    }
}

extension DaemonCommand {
    static func cloud(_ address: String, _ parsed: ParsedArguments, homeID: String) throws -> CloudBridge {
        let (host, port) = try hostPort(address, option: "--cloud")
        guard let user = parsed.value("--cloud-username"), let file = parsed.value("--cloud-password-file") else {
            throw VGWError(.usage, "--cloud needs --cloud-username and --cloud-password-file")
        }
        return CloudBridge(
            host: host, port: port, homeID: homeID, username: user,
            password: try password(in: file, of: "the cloud identity"), caFile: parsed.value("--cloud-ca"),
            certFile: parsed.value("--cloud-cert"), keyFile: parsed.value("--cloud-key"))
    }

    static func externalBroker(_ address: String, _ parsed: ParsedArguments) throws
        -> GatewayConfiguration.ExternalBroker
    {
        let (host, port) = try hostPort(address, option: "--external-broker")
        guard let user = parsed.value("--broker-admin"), let file = parsed.value("--broker-admin-password-file") else {
            throw VGWError(.usage, "--external-broker needs --broker-admin and --broker-admin-password-file")
        }
        return .init(
            host: host, port: port, adminUsername: user, adminPassword: try password(in: file, of: "the broker admin"))
    }

    static func hostPort(_ address: String, option: String) throws -> (String, UInt16) {
        let parts = address.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = UInt16(parts[1]), port > 0 else {
            throw VGWError(.usage, "\(option) expects host:port, got '\(address)'")
        }
        return (String(parts[0]), port)
    }

    /// A password kept in a file (never on the command line, where `ps` would show it).
    static func password(in file: String, of whom: String) throws -> String {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw VGWError(.config, "cannot read the password of \(whom) from \(file)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Turns SIGTERM/SIGINT into an awaitable event (the default action, dying on the spot,
/// would leave the broker without its drain).
final class SignalWaiter: Sendable {
    private let stream: AsyncStream<Int32>
    /// Only kept alive here, never touched after `init`; dispatch sources are thread-safe.
    nonisolated(unsafe) private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    func next() async -> Int32 {
        for await number in stream { return number }
        return SIGTERM
    }
}
