import Support
import Testing
import VGWServiceKit

@Suite struct ServiceTopicsTests {
    let prefix = "vgw/acme/"

    @Test func namesAreRelativeToTheNamespace() throws {
        #expect(try ServiceTopics.name("living/temp", prefix: prefix) == "vgw/acme/living/temp")
        #expect(try ServiceTopics.name("a", prefix: prefix) == "vgw/acme/a")
        #expect(try ServiceTopics.name("a.b/..c/x-y_z", prefix: prefix) == "vgw/acme/a.b/..c/x-y_z")
    }

    @Test(arguments: [
        "", "/living/temp", "living//temp", "living/", "..", "../other/x", "a/../../b", "./a", "a/.", "a/.../b",
        "$SYS/x", "a/$b", "a/+/b", "a/#", "#", "+", "a\u{0}b",
    ])
    func refusesNamesThatWouldLeaveTheNamespace(_ topic: String) {
        #expect(throws: VGWError.self) { try ServiceTopics.name(topic, prefix: prefix) }
    }

    @Test func filtersMayUseWholeLevelWildcards() throws {
        #expect(try ServiceTopics.filter("cmd/#", prefix: prefix) == "vgw/acme/cmd/#")
        #expect(try ServiceTopics.filter("+/temp", prefix: prefix) == "vgw/acme/+/temp")
        #expect(try ServiceTopics.filter("#", prefix: prefix) == "vgw/acme/#")
    }

    @Test(arguments: ["", "/cmd/#", "cmd/#/x", "cmd/a#", "cmd/a+", "../#", "$SYS/#", "cmd//#", "./+"])
    func refusesBadFilters(_ filter: String) {
        #expect(throws: VGWError.self) { try ServiceTopics.filter(filter, prefix: prefix) }
    }

    @Test func stripsThePrefixOfReceivedTopics() {
        #expect(ServiceTopics.relative("vgw/acme/cmd/ping", prefix: prefix) == "cmd/ping")
        #expect(ServiceTopics.relative("vgw/other/cmd/ping", prefix: prefix) == nil)
        #expect(ServiceTopics.relative("vgw/acme/", prefix: prefix) == nil)
    }
}
