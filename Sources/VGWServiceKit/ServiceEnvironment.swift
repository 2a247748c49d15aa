import Support

#if canImport(FoundationEssentials)
    // Not all of Foundation: it would link ICU into a static service (see Support's Logger).
    import FoundationEssentials
#else
    import Foundation
#endif

/// What `vgwd` tells a service about itself, read from the `VGW_*` environment variables.
///
/// The daemon issues a fresh broker identity at every start and passes it only through the
/// environment (never the command line, which `ps` shows to everyone), so a service reads
/// this once at start-up. Validation is strict and names every missing or malformed
/// variable: a service started by hand with half an environment should fail at once with a
/// message that says what is missing, not later with an opaque broker refusal.
public struct ServiceEnvironment: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String
    /// The client id the broker binds this identity to; any other id is refused.
    public var clientID: String
    /// The provider's namespace, `vgw/<provider>/`, always ending in `/`.
    public var topicPrefix: String
    public var provider: String
    public var bundle: String
    public var bundleVersion: String
    /// The bundle's private, persistent directory (also `HOME`).
    public var stateDirectory: URL

    /// The variables that must be present and non-empty.
    public static let requiredVariables = [
        "VGW_MQTT_HOST", "VGW_MQTT_PORT", "VGW_MQTT_USERNAME", "VGW_MQTT_PASSWORD", "VGW_MQTT_CLIENT_ID",
        "VGW_TOPIC_PREFIX", "VGW_PROVIDER", "VGW_BUNDLE", "VGW_BUNDLE_VERSION", "VGW_STATE_DIR",
    ]

    public init(
        host: String, port: Int, username: String, password: String, clientID: String, topicPrefix: String,
        provider: String, bundle: String, bundleVersion: String, stateDirectory: URL
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.clientID = clientID
        self.topicPrefix = topicPrefix
        self.provider = provider
        self.bundle = bundle
        self.bundleVersion = bundleVersion
        self.stateDirectory = stateDirectory
    }

    /// Reads the environment of this process.
    public static func current() throws(VGWError) -> ServiceEnvironment {
        try ServiceEnvironment(environment: ProcessInfo.processInfo.environment)
    }

    /// Parses and validates a set of variables (tests inject their own).
    ///
    /// Throws `VGWError(.config, ...)` naming every missing variable, or the first malformed one.
    public init(environment: [String: String]) throws(VGWError) {
        let missing = Self.requiredVariables.filter { (environment[$0] ?? "").isEmpty }
        guard missing.isEmpty else {
            throw VGWError(
                .config,
                "missing environment variable\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")): "
                    + "a service must be started by vgwd (or given the same VGW_* variables)")
        }
        func value(_ name: String) -> String { environment[name] ?? "" }
        guard let port = Int(value("VGW_MQTT_PORT")), (1...65535).contains(port) else {
            throw VGWError(.config, "VGW_MQTT_PORT must be a port number (1-65535), not \(value("VGW_MQTT_PORT"))")
        }
        let prefix = value("VGW_TOPIC_PREFIX")
        guard prefix.hasSuffix("/"), !prefix.hasPrefix("/"), !prefix.hasPrefix("$"),
            !prefix.contains("+"), !prefix.contains("#"), !prefix.utf8.contains(0)
        else {
            throw VGWError(
                .config, "VGW_TOPIC_PREFIX must be a topic prefix ending in / without wildcards, such as vgw/acme/")
        }
        let state = value("VGW_STATE_DIR")
        guard state.hasPrefix("/") else {
            throw VGWError(.config, "VGW_STATE_DIR must be an absolute path, not \(state)")
        }
        self.init(
            host: value("VGW_MQTT_HOST"), port: port, username: value("VGW_MQTT_USERNAME"),
            password: value("VGW_MQTT_PASSWORD"), clientID: value("VGW_MQTT_CLIENT_ID"), topicPrefix: prefix,
            provider: value("VGW_PROVIDER"), bundle: value("VGW_BUNDLE"), bundleVersion: value("VGW_BUNDLE_VERSION"),
            stateDirectory: URL(fileURLWithPath: state, isDirectory: true))
    }
}

extension ServiceEnvironment: CustomStringConvertible {
    /// Everything but the password, so that an environment can be logged safely.
    public var description: String {
        "ServiceEnvironment(\(provider)/\(bundle) \(bundleVersion), \(username)@\(host):\(port), "
            + "client \(clientID), prefix \(topicPrefix), state \(stateDirectory.path))"
    }
}
