/// The home broker's topic tree: the contract between the core, providers and tools.
/// Every topic the project uses is built here and nowhere else.
public enum Topics {
    /// The provider's data plane: `vgw/<p>`.
    public static func namespace(_ provider: ProviderID) -> String { "vgw/\(provider.rawValue)" }

    /// Management requests to a provider's VGW (or to the core for `ProviderID.core`).
    public static func request(_ target: ProviderID) -> String { "mgmt/\(target.rawValue)/req" }

    /// Responses for one requester: `mgmt/<p>/res/<reply>`.
    public static func response(_ target: ProviderID, replyTo: String) -> String {
        "mgmt/\(target.rawValue)/res/\(replyTo)"
    }

    /// Where the core answers a request whose `replyTo` it could not read (malformed JSON
    /// sent over MQTT 3.1.1, which has no response-topic property).
    public static func undeliverable(_ target: ProviderID) -> String { response(target, replyTo: "_errors") }

    /// The core subscribes to every VGW's request topic with this one filter.
    public static let allRequests = "mgmt/+/req"

    /// Retained state the core publishes about a VGW.
    public static func status(_ provider: ProviderID) -> String { "status/\(provider.rawValue)" }
    public static func providerState(_ provider: ProviderID) -> String { "status/\(provider.rawValue)/state" }

    /// Gateway-wide retained state (`status/core/gateway`): up, version, broker address.
    public static let gatewayStatus = "status/core/gateway"

    /// Mosquitto's dynamic security plugin control topic and its responses.
    public static let dynsecControl = "$CONTROL/dynamic-security/v1"
    public static let dynsecResponse = "$CONTROL/dynamic-security/v1/response"

    /// Parses `mgmt/<p>/req` into its target; nil for anything else.
    public static func requestTarget(of topic: String) -> String? {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count == 3, levels[0] == "mgmt", levels[2] == "req" else { return nil }
        return String(levels[1])
    }
}
