/// The cloud broker's topic tree, and where it lands in each home. The contract between a
/// provider's fleet tools, the cloud broker's ACLs and every home's bridge.
///
/// ```
/// cloud: fleet/<home>/mgmt/<p>/req         signed requests to one home      -> home: remote/mgmt/<p>/req
///        fleet/all/mgmt/<p>/req            signed requests to every home    -> home: remote/mgmt/<p>/req
///        fleet/<home>/mgmt/<p>/res/<reply> responses                       <- home: remote/mgmt/<p>/res/<reply>
///        fleet/<home>/status/<p>/...       VGW and bundle status           <- home: status/<p>/...
///        fleet/<home>/vgw/<p>/export/...   what a provider exports         <- home: vgw/<p>/export/...
/// ```
///
/// In the home, only the bridge writes `remote/...` (no client has an ACL there), so the
/// core knows a request came through the cloud and demands a signature.
public enum FleetTopics {
    /// The target of a request to every home.
    public static let allHomes = "all"

    public static func request(home: String, provider: String) -> String { "fleet/\(home)/mgmt/\(provider)/req" }

    public static func response(home: String, provider: String, replyTo: String) -> String {
        "fleet/\(home)/mgmt/\(provider)/res/\(replyTo)"
    }

    /// Every home's responses to one requester.
    public static func responses(provider: String, replyTo: String) -> String {
        "fleet/+/mgmt/\(provider)/res/\(replyTo)"
    }

    /// The home a cloud topic `fleet/<home>/...` is about.
    public static func home(of topic: String) -> String? {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count > 2, levels[0] == "fleet" else { return nil }
        return String(levels[1])
    }

    /// In the home: where bridged requests arrive and where their answers go.
    public static let localPrefix = "remote/"
    public static let allLocalRequests = "remote/mgmt/+/req"
    public static func localResponse(provider: String, replyTo: String) -> String {
        "remote/mgmt/\(provider)/res/\(replyTo)"
    }

    /// Parses `remote/mgmt/<p>/req` into its target.
    public static func localRequestTarget(of topic: String) -> String? {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count == 4, levels[0] == "remote", levels[1] == "mgmt", levels[3] == "req" else { return nil }
        return String(levels[2])
    }
}
