import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Synchronization
import TestSupport
import Testing

/// Cooperation between providers: explicit grants, effective at once, revocable at once.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct GrantTests {
    /// A client with a persistent session: if anything were queued for it before a
    /// revoke, it would still be delivered after the broker's kick and reconnect.
    static func persistentClient(_ gw: GatewayFixture, _ credentials: IssuedCredentials) async throws -> MQTTClient {
        try await MQTTClient.connected(
            MQTTConfiguration(
                port: Int(gw.port), clientID: credentials.clientId, username: credentials.username,
                password: credentials.password, cleanStart: false, sessionExpiryInterval: 300, reconnect: true,
                operationTimeout: .seconds(10)))
    }

    @Test func readGrantSharesStateOnlyAndRevokeStopsALiveSubscription() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            let thermostat = try await gw.connect(try await gw.addClient("a", "thermostat"))
            let bCreds = try await gw.addClient("b", "health")
            // Before any grant, b sees nothing of a.
            let early = try await gw.connect(bCreds)
            #expect(MQTTClient.isRefusal(try await early.subscribe("vgw/a/thermo/state/#")))
            await early.disconnect()

            let grant = try await gw.admin.call(
                "grant.create", ["owner": "a", "grantee": "b", "filter": "thermo/state/#", "access": "read"])
            let id = try #require(grant["id"]?.intValue)
            let b = try await Self.persistentClient(gw, bCreds)
            let seen = Inbox(b)
            #expect(try await b.subscribe("vgw/a/thermo/state/#") == 1)
            #expect(MQTTClient.isRefusal(try await b.subscribe("vgw/a/thermo/cmd/#")))
            #expect(MQTTClient.isRefusal(try await b.subscribe("vgw/a/#")))
            #expect(try await b.subscribe("vgw/b/sentinel") == 1)
            try await thermostat.publish(topic: "vgw/a/thermo/state/living", string: "21.5", qos: .atLeastOnce)
            #expect(try await seen.message(on: "vgw/a/thermo/state/living").payloadString == "21.5")
            // Read-only: b's publishes there never reach a.
            let aSeen = Inbox(thermostat)
            #expect(try await thermostat.subscribe("vgw/a/#") == 1)
            try await b.publish(topic: "vgw/a/thermo/state/living", string: "forged", qos: .atLeastOnce)
            try await b.publish(topic: "vgw/a/thermo/cmd/heat", string: "forged", qos: .atLeastOnce)
            try await thermostat.publish(topic: "vgw/a/sentinel", string: "s", qos: .atLeastOnce)
            _ = try await aSeen.message(on: "vgw/a/sentinel")
            #expect(await aSeen.received.allSatisfy { $0.payloadString != "forged" })

            // Revoke: the live subscription stops at once; measure the effect time.
            let revokedAt = ContinuousClock.now
            _ = try await gw.admin.call("grant.revoke", ["id": .number(Double(id))])
            let revokeLatency = ContinuousClock.now - revokedAt
            try await thermostat.publish(topic: "vgw/a/thermo/state/living", string: "after-revoke", qos: .atLeastOnce)
            // The plugin disconnects the clients of a role it changes; b comes back with its
            // persistent session (anything queued for it would now be delivered).
            let lost = Mutex(false)
            _ = await firstMatch(b.events, within: .seconds(10)) { event in
                switch event {
                case .disconnected: lost.withLock { $0 = true }
                case .connected: return lost.withLock { $0 }
                default: break
                }
                return false
            }
            try await b.publish(topic: "vgw/b/sentinel", string: "s", qos: .atLeastOnce)
            _ = try await seen.message(on: "vgw/b/sentinel", timeout: .seconds(10))
            #expect(await seen.received.allSatisfy { $0.payloadString != "after-revoke" })
            print("grant revoke to effect: \(revokeLatency)")
            #expect(revokeLatency < .seconds(1))
            await b.disconnect()
            await thermostat.disconnect()
        }
    }

    @Test func writeGrantAllowsOnlyItsSubtree() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            let thermostat = try await gw.connect(try await gw.addClient("a", "thermostat"))
            let aSeen = Inbox(thermostat)
            #expect(try await thermostat.subscribe("vgw/a/#") == 1)
            _ = try await gw.admin.call(
                "grant.create", ["owner": "a", "grantee": "b", "filter": "thermo/cmd/#", "access": "write"])
            let b = try await gw.connect(try await gw.addClient("b", "controller"))
            try await b.publish(topic: "vgw/a/thermo/cmd/heat", string: "on", qos: .atLeastOnce)
            try await b.publish(topic: "vgw/a/thermo/state/living", string: "forged", qos: .atLeastOnce)
            try await b.publish(topic: "vgw/a/other", string: "forged", qos: .atLeastOnce)
            #expect(MQTTClient.isRefusal(try await b.subscribe("vgw/a/thermo/cmd/#")))
            try await thermostat.publish(topic: "vgw/a/sentinel", string: "s", qos: .atLeastOnce)
            _ = try await aSeen.message(on: "vgw/a/sentinel")
            #expect(try await aSeen.message(on: "vgw/a/thermo/cmd/heat").payloadString == "on")
            #expect(await aSeen.received.allSatisfy { $0.payloadString != "forged" })
            await b.disconnect()
            await thermostat.disconnect()
        }
    }

    @Test func grantToEveryoneReachesProvidersCreatedLater() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("a")
            let publisher = try await gw.connect(try await gw.addClient("a", "pub"))
            _ = try await gw.admin.call("grant.create", ["owner": "a", "grantee": "*", "filter": "public/#"])
            try await gw.createProvider("late")
            let lateCreds = try await gw.addClient("late", "app")
            let late = try await gw.connect(lateCreds)
            let seen = Inbox(late)
            #expect(try await late.subscribe("vgw/a/public/#") == 1)
            #expect(try await late.subscribe("status/late/grants") == 1)
            try await publisher.publish(topic: "vgw/a/public/news", string: "hello all", qos: .atLeastOnce)
            #expect(try await seen.message(on: "vgw/a/public/news").payloadString == "hello all")
            let status = try await seen.message(on: "status/late/grants")
            let grants = try JSONCoding.decoder.decode(JSONValue.self, from: Data(status.payload))["grants"]
            #expect(grants?.arrayValue?.first?["filter"] == "public/#")
            // Deleting the owner removes its grants everywhere.
            _ = try await gw.admin.call("vgw.delete", ["provider": "a"])
            #expect(try await gw.admin.call("grant.list")["grants"] == [])
            await late.disconnect()
            await publisher.disconnect()
        }
    }

    @Test func providersOfferAndRevokeOnlyTheirOwn() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            try await gw.createProvider("c")
            let a = try await gw.providerManagement(try await gw.addClient("a", "app"))
            let bCreds = try await gw.addClient("b", "app")
            let offered = try await a.call("grant.offer", ["grantee": "b", "filter": "presence/#"])
            let id = try #require(offered["id"]?.intValue)
            // (b's clients were disconnected when its role changed: connect after the offer.)
            let b = try await gw.providerManagement(bCreds)
            #expect(offered["owner"] == "a")
            // b sees it (received), c does not; b cannot revoke it; a can.
            #expect(try await b.call("grant.list")["grants"]?.arrayValue?.count == 1)
            let c = try await gw.providerManagement(try await gw.addClient("c", "app"))
            #expect(try await c.call("grant.list")["grants"] == [])
            #expect(try await b.send("grant.revoke", ["id": .number(Double(id))]).error?.code == .notFound)
            #expect(
                try await b.send("grant.offer", ["provider": "a", "grantee": "b", "filter": "#"]).error?.code
                    == .notFound)
            #expect(
                try await b.send("grant.create", ["owner": "a", "grantee": "b", "filter": "#"]).error?.code
                    == .unknownOp)
            _ = try await a.call("grant.revoke", ["id": .number(Double(id))])
            #expect(try await gw.admin.call("grant.list")["grants"] == [])
            await a.close()
            await b.close()
            await c.close()
        }
    }

    static let badFilters = [
        "", "/abs", "a//b", "a/../b", "..", ".", "a/./b", "$SYS/#", "a/$x", "a#", "#/a", "a/#/b", "a+/b", "+a",
        "a/b+", "x\u{0}y", "new\nline", String(repeating: "a", count: 300),
    ]

    @Test func badFiltersAndGranteesAreRefused() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            for filter in Self.badFilters {
                let response = try await gw.admin.send(
                    "grant.create", ["owner": "a", "grantee": "b", "filter": .string(filter)])
                #expect(response.error?.code == .invalidArgument, "filter \(filter.debugDescription)")
            }
            let cases: [([String: JSONValue], VGWError.Code)] = [
                (["owner": "a", "grantee": "a", "filter": "x"], .invalidArgument),
                (["owner": "a", "grantee": "ghost", "filter": "x"], .notFound),
                (["owner": "ghost", "grantee": "b", "filter": "x"], .notFound),
                (["owner": "a", "grantee": "b/c", "filter": "x"], .invalidArgument),
                (["owner": "a", "grantee": "+", "filter": "x"], .invalidArgument),
                (["owner": "a", "grantee": "b", "filter": "x", "access": "admin"], .invalidArgument),
                (["owner": "a", "grantee": "b", "filter": 7], .invalidArgument),
                (["owner": "a", "grantee": "b"], .invalidArgument),
            ]
            for (args, code) in cases {
                #expect(try await gw.admin.send("grant.create", args).error?.code == code, "\(args)")
            }
            // A valid one works once, and only once.
            _ = try await gw.admin.call("grant.create", ["owner": "a", "grantee": "b", "filter": "+/state"])
            let twice = try await gw.admin.send("grant.create", ["owner": "a", "grantee": "b", "filter": "+/state"])
            #expect(twice.error?.code == .alreadyExists)
            #expect(try await gw.admin.send("grant.revoke", ["id": 999]).error?.code == .notFound)
        }
    }
}
