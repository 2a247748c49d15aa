/// Every management operation, with who may call it. The one table of ops: the daemon
/// dispatches on it, the CLI builds requests from it, the docs list it.
public enum ManagementOperation: String, Sendable, CaseIterable, Codable {
    case vgwCreate = "vgw.create"
    case vgwDelete = "vgw.delete"
    case vgwStart = "vgw.start"
    case vgwStop = "vgw.stop"
    case vgwList = "vgw.list"
    case vgwIsAlive = "vgw.isAlive"
    case vgwShow = "vgw.show"
    case clientAdd = "client.add"
    case clientRemove = "client.remove"
    case clientList = "client.list"
    case gatewayStatus = "gateway.status"
    case bundleInstall = "bundle.install"
    case bundleUninstall = "bundle.uninstall"
    case bundleStart = "bundle.start"
    case bundleStop = "bundle.stop"
    case bundleList = "bundle.list"
    case bundleIsAlive = "bundle.isAlive"
    case bundleLogs = "bundle.logs"
    case grantCreate = "grant.create"
    case grantOffer = "grant.offer"
    case grantRevoke = "grant.revoke"
    case grantList = "grant.list"
    case perfGet = "perf.get"
    case acctNotify = "acct.notify"
    case acctUsage = "acct.usage"
    case quotaSet = "quota.set"
    case quotaGet = "quota.get"
    case securitySetCredential = "security.setCredential"
    case securityChallenge = "security.challenge"

    /// Where an op is served: on `mgmt/core/req` only, or also on `mgmt/<p>/req` where the
    /// provider is implied by the topic (the provider's view is a strict subset).
    public enum Scope: Sendable { case coreOnly, coreAndProvider }

    public var scope: Scope {
        switch self {
        case .vgwIsAlive, .vgwShow, .clientList, .bundleInstall, .bundleUninstall, .bundleStart, .bundleStop,
            .bundleList, .bundleIsAlive, .bundleLogs, .grantOffer, .grantRevoke, .grantList, .perfGet, .acctNotify,
            .acctUsage, .quotaGet:
            .coreAndProvider
        default: .coreOnly
        }
    }

    public var summary: String {
        switch self {
        case .vgwCreate: "create a provider's virtual gateway (running)"
        case .vgwDelete: "delete a virtual gateway with every identity and ACL it had"
        case .vgwStart: "start a stopped virtual gateway: its clients may connect again"
        case .vgwStop: "stop a virtual gateway: disconnect its clients and refuse them"
        case .vgwList: "list virtual gateways"
        case .vgwIsAlive: "whether a virtual gateway is running"
        case .vgwShow: "one virtual gateway in detail"
        case .clientAdd: "issue broker credentials to a provider's device or app"
        case .clientRemove: "remove a client's credentials and disconnect it"
        case .clientList: "list a provider's clients"
        case .gatewayStatus: "the core gateway's own state"
        case .bundleInstall: "install (or replace) a bundle from its archive"
        case .bundleUninstall: "stop a bundle and remove it with its files and identity"
        case .bundleStart: "start a bundle's service (and keep it running)"
        case .bundleStop: "stop a bundle's service"
        case .bundleList: "list a provider's bundles and their state"
        case .bundleIsAlive: "whether a bundle's service is running"
        case .bundleLogs: "the tail of a bundle's standard output and error"
        case .grantCreate: "let a provider (or every provider, *) read or write part of another's namespace"
        case .grantOffer: "share part of one's own namespace with another provider"
        case .grantRevoke: "take a grant back, effective at once on live subscriptions"
        case .grantList: "list grants (a provider sees those it gave or received)"
        case .perfGet: "CPU, memory, messages and bytes of a VGW and of each of its bundles"
        case .acctNotify: "record an accounting event of a provider"
        case .acctUsage: "a provider's accounting events and service usage time"
        case .quotaSet: "set a provider's message rate and bandwidth quota (0 = unlimited)"
        case .quotaGet: "a provider's quota"
        case .securitySetCredential: "register a provider's (or the operator's, core) Ed25519 public key"
        case .securityChallenge: "prove that a provider holds the key registered for it"
        }
    }
}
