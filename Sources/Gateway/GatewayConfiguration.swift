import Broker
import Foundation
import Services
import Support

/// Everything `vgwd` needs to know; every field has a default that works out of the box.
public struct GatewayConfiguration: Sendable {
    /// Where the store, the broker's files and the operator's credentials live.
    public var dataDirectory: String
    /// Address the embedded broker listens on.
    public var host: String = "127.0.0.1"
    public var port: UInt16 = 1883
    /// When `port` is taken, listen on a free port instead (logged loudly) rather than fail.
    /// An explicitly chosen port is never replaced.
    public var portFallback: Bool = true
    /// This home's id, reported in every response (fleets fan out to many homes).
    public var homeID: String = GatewayConfiguration.defaultHomeID()
    /// Largest management request accepted, in bytes.
    public var maxRequestBytes: Int = 1 << 20
    /// The metering plugin (per-provider traffic and quotas); nil looks beside the
    /// executable, then in /usr/local/lib/vgw. Not found: the gateway runs without it.
    public var meterPlugin: String?
    /// The bridge to the cloud broker (remote management); nil for a stand-alone home.
    /// Its `homeID` is replaced by this configuration's.
    public var cloud: CloudBridge?
    /// Largest bundle archive accepted by `bundle.install`.
    public var maxBundleBytes: Int = 16 << 20
    /// Services of the n-th provider run as uid (and gid) `serviceUIDBase + n` when vgwd
    /// runs as root; pick a range no real user has (and a distinct one per daemon).
    public var serviceUIDBase: uid_t = 200_000
    /// Restart backoff, crash-loop detection and log bounds of services.
    public var serviceTuning = ServiceSupervisor.Tuning()
    /// Largest MQTT message the broker accepts at all.
    public var maxPacketBytes: Int = 32 << 20
    /// The mosquitto executable; nil looks it up.
    public var mosquittoPath: String?
    /// Use an operator's own Mosquitto (with the dynamic security plugin) instead of
    /// starting one; nil runs the embedded broker.
    public var externalBroker: ExternalBroker?
    /// Where `perf.get` finds messages and bytes per provider (the broker's metering
    /// plugin); the default knows nothing, reported as `"traffic": null`.
    public var trafficSource: TrafficSource = { [:] }

    /// An already running broker and an identity that may administer its plugin.
    public struct ExternalBroker: Sendable, Equatable {
        public var host: String
        public var port: UInt16
        public var adminUsername: String
        public var adminPassword: String

        public init(host: String, port: UInt16, adminUsername: String, adminPassword: String) {
            self.host = host
            self.port = port
            self.adminUsername = adminUsername
            self.adminPassword = adminPassword
        }
    }

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    /// `$VGW_DATA_DIR`, else `$XDG_STATE_HOME/vgw`, else `./vgw-data`.
    public static func defaultDataDirectory(environment: [String: String] = ProcessInfo.processInfo.environment)
        -> String
    {
        if let explicit = environment["VGW_DATA_DIR"], !explicit.isEmpty { return explicit }
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return state + "/vgw" }
        return FileManager.default.currentDirectoryPath + "/vgw-data"
    }

    static func defaultHomeID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "home" }
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return host.isEmpty ? "home" : host
    }
}

/// The files of a data directory, named in one place.
public struct DataDirectory: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }

    public var store: String { path + "/state.db" }
    public var brokerDirectory: String { path + "/broker" }
    public var bundles: String { path + "/bundles" }

    /// Makes sure `file` exists with mode 0600 (SQLite gives its -wal and -shm files the
    /// mode of the database), and returns its path.
    public func createPrivateFile(_ file: String) throws -> String {
        let fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VGWError(.io, "cannot create \(file): \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o600)
        close(fd)
        return file
    }
    public var dynsecFile: String { brokerDirectory + "/dynamic-security.json" }
    /// The operator's broker credentials, read by `vgw` (mode 0600, like a kubeconfig).
    public var operatorCredentials: String { path + "/operator.json" }
    /// Written by a running daemon: its pid, so a second daemon on the same directory refuses to start.
    public var pidFile: String { path + "/vgwd.pid" }

    /// Creates the directory if it does not exist. It is 0711: services (other uids) may
    /// traverse it to reach their own bundle directory, but not list it; everything in it
    /// is created private (0600 files, 0700 directories) by whoever creates it.
    public func create() throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            chmod(path, 0o711)
            try FileManager.default.createDirectory(
                atPath: brokerDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw VGWError(.io, "cannot create data directory \(path)", cause: SendableDescription("\(error)"))
        }
    }
}

/// How `vgw` reaches the daemon: the broker address and the operator identity.
public struct OperatorCredentials: Codable, Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var username: String
    public var password: String
    public var home: String

    public init(host: String, port: UInt16, username: String, password: String, home: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.home = home
    }

    public static func load(from path: String) throws -> OperatorCredentials {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VGWError(
                .config,
                "no operator credentials at \(path): is vgwd running with this data directory? (set --data-dir or VGW_DATA_DIR)"
            )
        }
        do {
            return try JSONDecoder().decode(OperatorCredentials.self, from: data)
        } catch {
            throw VGWError(
                .config, "operator credentials at \(path) are not valid", cause: SendableDescription("\(error)"))
        }
    }
}
