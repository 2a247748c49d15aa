import Foundation
import Support

/// What the supervised mosquitto looks like; `render()` turns it into mosquitto.conf
/// (Mosquitto 2.0.11 syntax).
public struct BrokerConfiguration: Sendable, Equatable {
    public struct Listener: Sendable, Equatable {
        /// A numeric address; loopback by default so that only local services reach the broker.
        public var host: String
        public var port: UInt16
        /// TLS on this listener: the broker's certificate and key, and (to demand client
        /// certificates) the CA that signs them.
        public var tls: TLS?

        public struct TLS: Sendable, Equatable {
            public var certFile: String
            public var keyFile: String
            public var clientCAFile: String?
            public init(certFile: String, keyFile: String, clientCAFile: String? = nil) {
                self.certFile = certFile
                self.keyFile = keyFile
                self.clientCAFile = clientCAFile
            }
        }

        public init(host: String = "127.0.0.1", port: UInt16 = 1883, tls: TLS? = nil) {
            self.host = host
            self.port = port
            self.tls = tls
        }
    }

    /// The Debian location of the plugin (package mosquitto).
    public static let debianDynamicSecurityPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
    public static let defaultPacketSize = 16 * 1024 * 1024

    /// The first one is where the supervisor checks that the broker accepts connections.
    public var listeners: [Listener]
    /// Holds mosquitto.conf, mosquitto.log, the persistence database and dynamic-security.json.
    public var dataDirectory: String
    public var mosquittoPath: String
    /// nil runs the broker without the plugin (tests with anonymous access only).
    public var dynamicSecurityPlugin: String?
    /// The metering and quota plugin (libvgw_meter.so), loaded before dynamic security;
    /// nil runs the broker without it.
    public var meterPlugin: String?
    /// The bridge to the cloud broker, if this home is part of a fleet.
    public var bridge: CloudBridge?
    public var allowAnonymous: Bool
    public var persistence: Bool
    /// The largest MQTT packet accepted, in bytes; bundles need megabytes. It bounds the
    /// payload too, so the deprecated `message_size_limit` is not written.
    public var maxPacketBytes: Int
    /// QoS 1/2 messages in flight per client.
    public var maxInflightMessages: Int
    /// The account a broker started as root switches to. nil keeps the daemon's own user
    /// (mosquitto 2.0.11 honours `user root`), so that the broker can rewrite the files the
    /// daemon writes; a name (such as "mosquitto") makes the supervisor hand the data
    /// directory to that user before every start. Has no effect when not run as root.
    public var user: String?

    /// One listener on `host:port`; append to `listeners` for more.
    public init(
        host: String = "127.0.0.1", port: UInt16 = 1883, directory: String, mosquittoPath: String? = nil,
        dynamicSecurityPlugin: String? = BrokerConfiguration.debianDynamicSecurityPlugin,
        allowAnonymous: Bool = false, persistence: Bool = true,
        maxPacketBytes: Int = BrokerConfiguration.defaultPacketSize, maxInflightMessages: Int = 20,
        user: String? = nil, meterPlugin: String? = nil
    ) {
        self.dataDirectory = directory
        self.listeners = [Listener(host: host, port: port)]
        self.mosquittoPath = mosquittoPath ?? BrokerConfiguration.locateMosquitto() ?? "/usr/sbin/mosquitto"
        self.dynamicSecurityPlugin = dynamicSecurityPlugin
        self.allowAnonymous = allowAnonymous
        self.persistence = persistence
        self.maxPacketBytes = maxPacketBytes
        self.maxInflightMessages = maxInflightMessages
        self.user = user
        self.meterPlugin = meterPlugin
    }

    public var configurationFile: String { dataDirectory + "/mosquitto.conf" }
    public var logFile: String { dataDirectory + "/mosquitto.log" }
    public var dynsecFile: String { dataDirectory + "/dynamic-security.json" }

    /// Who must own the files the broker rewrites (dynsecFile): the `user` account when a
    /// root daemon runs the broker as another user, nil when the broker runs as the daemon.
    public var brokerUserOwner: (uid: uid_t, gid: gid_t)? {
        guard geteuid() == 0, let user, user != "root", let account = getpwnam(user) else { return nil }
        return (account.pointee.pw_uid, account.pointee.pw_gid)
    }

    /// mosquitto in /usr/sbin, /usr/local/sbin, then the directories of PATH.
    public static func locateMosquitto(
        path: String? = ProcessInfo.processInfo.environment["PATH"]
    ) -> String? {
        let directories = ["/usr/sbin", "/usr/local/sbin"] + (path ?? "").split(separator: ":").map(String.init)
        return directories.map { $0 + "/mosquitto" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// libvgw_meter.so beside the running executable (a SwiftPM build directory or an
    /// installed bin directory), then in /usr/local/lib/vgw/.
    public static func locateMeterPlugin(executable: String? = nil) -> String? {
        let name = "libvgw_meter.so"
        var candidates: [String] = []
        let exe = executable ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        if let exe { candidates.append((exe as NSString).deletingLastPathComponent + "/" + name) }
        candidates.append("/usr/local/lib/vgw/" + name)
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// The account named in `user` line: the configured one, else the daemon's own when root.
    var effectiveUser: String? {
        if let user { return user }
        return geteuid() == 0 ? "root" : nil
    }

    /// mosquitto.conf text. Global options come first: with `per_listener_settings false`
    /// authentication and the plugin apply to every listener.
    public func render() -> String {
        var lines = ["# Written by vgwd before every broker start; edits are overwritten."]
        lines.append("per_listener_settings false")
        lines.append("allow_anonymous \(allowAnonymous)")
        if let effectiveUser { lines.append("user \(effectiveUser)") }
        // Mosquitto 2.0.11 asks the ACL callbacks in the order of the plugin lines and stops
        // at the first answer that is not "defer". The meter counts every attempt and only
        // defers or throttles, so it must come first; dynamic security then decides.
        if let meterPlugin { lines.append("plugin \(meterPlugin)") }
        if let dynamicSecurityPlugin {
            lines.append("plugin \(dynamicSecurityPlugin)")
            lines.append("plugin_opt_config_file \(dynsecFile)")
        }
        lines.append("persistence \(persistence)")
        if persistence { lines.append("persistence_location \(dataDirectory)/") }
        lines.append("max_packet_size \(maxPacketBytes)")
        lines.append("max_inflight_messages \(maxInflightMessages)")
        lines.append("set_tcp_nodelay true")
        lines.append("log_dest stderr")
        lines.append(contentsOf: ["error", "warning", "notice", "information"].map { "log_type \($0)" })
        lines.append("log_timestamp_format %Y-%m-%dT%H:%M:%S")
        for listener in listeners {
            lines.append("listener \(listener.port) \(listener.host)")
            if let tls = listener.tls {
                lines += ["certfile \(tls.certFile)", "keyfile \(tls.keyFile)"]
                if let ca = tls.clientCAFile { lines += ["cafile \(ca)", "require_certificate true"] }
            }
        }
        if let bridge { lines += bridge.render() }
        return lines.joined(separator: "\n") + "\n"
    }
}
