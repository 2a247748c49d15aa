import Broker
import Foundation
import Protocol
import Testing

/// The isolation model as data: what each role may do.
@Suite struct AccessPolicyTests {
    let a = ProviderID(rawValue: "a")!
    let b = ProviderID(rawValue: "b")!

    func grant(_ id: Int, _ owner: ProviderID, _ grantee: Grantee, _ filter: String, _ access: GrantAccess) -> Grant {
        Grant(id: id, owner: owner, grantee: grantee, filter: filter, access: access, createdAt: Date())
    }

    @Test func providerRoleCoversOnlyItsOwnTrees() {
        let topics = Set(AccessPolicy.providerACLs(a).map(\.topic))
        #expect(topics == ["vgw/a/#", "$share/+/vgw/a/#", "mgmt/a/req", "mgmt/a/res/#", "status/a/#"])
        #expect(
            !AccessPolicy.providerACLs(a).contains { $0.acltype == .publishClientSend && $0.topic.hasPrefix("status/") }
        )
    }

    @Test func grantsAddExactlyTheirACLsToTheGranteesOnly() {
        let grants = [
            grant(1, a, .provider(b), "thermo/state/#", .read),
            grant(2, a, .everyone, "public/#", .read),
            grant(3, a, .provider(b), "thermo/cmd/#", .write),
        ]
        let bACLs = AccessPolicy.roleACLs(b, grants: grants)
        #expect(bACLs.contains(ACL(.subscribePattern, "vgw/a/thermo/state/#")))
        #expect(bACLs.contains(ACL(.publishClientReceive, "vgw/a/thermo/state/#")))
        #expect(!bACLs.contains(ACL(.publishClientSend, "vgw/a/thermo/state/#")))
        #expect(bACLs.contains(ACL(.publishClientReceive, "vgw/a/public/#")))
        #expect(bACLs.contains(ACL(.publishClientSend, "vgw/a/thermo/cmd/#")))
        #expect(!bACLs.contains(ACL(.subscribePattern, "vgw/a/thermo/cmd/#")))
        // The owner's role does not change: it has its namespace anyway.
        #expect(AccessPolicy.roleACLs(a, grants: grants) == AccessPolicy.providerACLs(a))
        let late = ProviderID(rawValue: "late")!
        #expect(AccessPolicy.roleACLs(late, grants: grants).contains(ACL(.subscribePattern, "vgw/a/public/#")))
    }

    @Test func aProviderCreatedLaterGetsTheGrantsToEveryone() {
        let late = ProviderID(rawValue: "late")!
        let acls = AccessPolicy.roleACLs(late, grants: [grant(1, a, .everyone, "public/#", .read)])
        #expect(acls.contains(ACL(.publishClientReceive, "vgw/a/public/#")))
        #expect(acls.contains(ACL(.subscribePattern, "vgw/a/public/#")))
    }

    @Test func roleUpdateIsAMinimalDiff() {
        let before = AccessPolicy.roleACLs(b, grants: [grant(1, a, .provider(b), "x/#", .readwrite)])
        let after = AccessPolicy.roleACLs(b, grants: [grant(2, a, .provider(b), "x/#", .read)])
        let commands = DynSecCommands.updateRole(b, from: before, to: after)
        #expect(commands.map(\.command) == ["removeRoleACL"])
        #expect(commands.first?.arguments["acltype"] == "publishClientSend")
    }
}
