import Protocol

/// The home broker's bridge to the cloud: requests for this home (or all homes) in,
/// responses, status and each provider's exported topics out. Nothing else crosses.
///
/// QoS 0 on purpose: a bridged QoS 1 message waits about 44 ms in Mosquitto 2.0's bridge
/// (measured, see DESIGN.md). Reliability comes from the sender instead: the fleet client
/// re-sends the same signed request until it is answered, and the home's nonce cache makes
/// sure it runs at most once.
public struct CloudBridge: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var homeID: String
    public var username: String
    public var password: String
    /// TLS to the cloud: the CA to trust, and this home's certificate and key, if any.
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?

    public init(
        host: String, port: UInt16, homeID: String, username: String, password: String, caFile: String? = nil,
        certFile: String? = nil, keyFile: String? = nil
    ) {
        self.host = host
        self.port = port
        self.homeID = homeID
        self.username = username
        self.password = password
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }

    /// The `connection` section of mosquitto.conf (it must come after the listeners).
    public func render() -> [String] {
        let home = "fleet/\(homeID)/"
        var lines = [
            "connection vgw-cloud",
            "address \(host):\(port)",
            "bridge_protocol_version mqttv311",
            "remote_clientid bridge-\(homeID)",
            "remote_username \(username)",
            "remote_password \(password)",
            "cleansession true",
            "notifications false",
            "try_private true",
            "restart_timeout 1 10",
            "keepalive_interval 30",
            "topic mgmt/+/req in 0 \(FleetTopics.localPrefix) \(home)",
            "topic mgmt/+/req in 0 \(FleetTopics.localPrefix) fleet/\(FleetTopics.allHomes)/",
            "topic mgmt/+/res/# out 0 \(FleetTopics.localPrefix) \(home)",
            "topic status/# out 0 \"\" \(home)",
            "topic vgw/+/export/# out 0 \"\" \(home)",
        ]
        if let caFile { lines.append("bridge_cafile \(caFile)") }
        if let certFile { lines.append("bridge_certfile \(certFile)") }
        if let keyFile { lines.append("bridge_keyfile \(keyFile)") }
        return lines
    }
}
