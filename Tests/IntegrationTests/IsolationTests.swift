import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Testing

/// The attack suite of the isolation model: a client of provider `b` tries everything
/// against provider `a`, and each attempt is observed to fail on the broker itself (by a
/// subscriber of `a`, or by the operator), not only by its reason code.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct IsolationTests {
    static let forbiddenFilters = [
        "#", "vgw/#", "vgw/a/#", "vgw/+/x", "+/a/#", "$SYS/#", "$CONTROL/#", "mgmt/#", "mgmt/a/#", "status/a/#",
        "$share/g/vgw/a/#", "$share/g/#", "vgw/a/x", "mgmt/a/res/#", "mgmt/core/res/#", "+/+/+",
        "$CONTROL/dynamic-security/v1/response",
    ]

    /// Providers `a` and `b`, with a client each: `a.sensor` and `b.attacker`.
    static func victimAndAttacker(_ gw: GatewayFixture) async throws -> (IssuedCredentials, IssuedCredentials) {
        try await gw.createProvider("a")
        try await gw.createProvider("b")
        return (try await gw.addClient("a", "sensor"), try await gw.addClient("b", "attacker"))
    }

    @Test func providerCannotSubscribeOutsideItsNamespace() async throws {
        try await GatewayFixture.with { gw in
            let (aCreds, bCreds) = try await Self.victimAndAttacker(gw)
            let attacker = try await gw.connect(bCreds)
            let inbox = Inbox(attacker)
            for filter in Self.forbiddenFilters {
                let code = try await attacker.subscribe(filter, qos: .atLeastOnce)
                #expect(MQTTClient.isRefusal(code), "b subscribed to \(filter) (granted \(code))")
            }
            // Whatever the SUBACKs said, nothing of a's reaches b: a publishes on its data
            // plane and the core publishes a's status; b's own sentinel arrives, a's never.
            #expect(try await attacker.subscribe("vgw/b/sentinel") == 1)
            let sensor = try await gw.connect(aCreds)
            try await sensor.publish(topic: "vgw/a/x", string: "secret", qos: .atLeastOnce)
            try await sensor.publish(topic: "vgw/a/deep/er", string: "secret", qos: .atLeastOnce, retain: true)
            _ = try await gw.admin.call("vgw.stop", ["provider": "a"])
            _ = try await gw.admin.call("vgw.start", ["provider": "a"])
            try await attacker.publish(topic: "vgw/b/sentinel", string: "done", qos: .atLeastOnce)
            _ = try await inbox.message(on: "vgw/b/sentinel")
            #expect(await inbox.topics() == ["vgw/b/sentinel"])
            await sensor.disconnect()
            await attacker.disconnect()
        }
    }

    @Test func providerCannotPublishOutsideItsNamespace() async throws {
        try await GatewayFixture.with { gw in
            let (aCreds, bCreds) = try await Self.victimAndAttacker(gw)
            let bPeer = try await gw.addClient("b", "peer")
            let observer = try await gw.connect(aCreds)
            let seen = Inbox(observer)
            #expect(try await observer.subscribe("vgw/a/#") == 1)
            #expect(try await observer.subscribe("mgmt/a/res/#") == 1)
            #expect(try await observer.subscribe("status/a/#") == 1)
            let peer = try await gw.connect(bPeer)
            let peerSeen = Inbox(peer)
            #expect(try await peer.subscribe("status/b/#") == 1)
            _ = try await peerSeen.message(on: "status/b/state")

            let attacker = try await gw.connect(bCreds)
            let request = #"{"id":"x","op":"client.list","args":{},"replyTo":"steal"}"#
            let deleteA = #"{"id":"y","op":"vgw.delete","args":{"provider":"a"},"replyTo":"steal"}"#
            let dynsec = #"{"commands":[{"command":"addGroupRole","groupname":"vgw-b","rolename":"vgw-a"}]}"#
            let attempts: [(String, String)] = [
                ("vgw/a/x", "forged"), ("mgmt/a/req", request), ("mgmt/core/req", deleteA),
                ("$CONTROL/dynamic-security/v1", dynsec), ("status/b/x", "forged"), ("status/b/state", "forged"),
                ("status/a/state", "forged"), ("vgw/core/x", "forged"),
            ]
            // The reason codes are not what is tested (Mosquitto may answer success so as not
            // to reveal its ACLs); what reaches the observers is.
            for (topic, payload) in attempts {
                try await attacker.publish(topic: topic, string: payload, qos: .atLeastOnce)
            }
            // Sentinels: a publishes on its own namespace; the operator asks for a's clients
            // (the answer lands after anything the attacker's messages could have caused).
            try await observer.publish(topic: "vgw/a/sentinel", string: "done", qos: .atLeastOnce)
            _ = try await seen.message(on: "vgw/a/sentinel")
            let stillThere = try await gw.admin.call("vgw.show", ["provider": "a"])
            #expect(stillThere["state"]?.stringValue == "running")
            let aMgmt = try await gw.providerManagement(aCreds)
            _ = try await aMgmt.call("vgw.isAlive")
            await aMgmt.close()
            // Adding a client republishes b's status: it reaches b's peer after anything the
            // attacker's status messages could have left there.
            _ = try await gw.addClient("b", "sentinel")
            _ = try await peerSeen.next { $0.topic == "status/b/state" && $0.payloadString.contains("sentinel") }
            #expect(await seen.topics().allSatisfy { !$0.hasSuffix("/steal") && $0 != "vgw/a/x" })
            #expect(await seen.received.allSatisfy { !$0.payloadString.contains("forged") })
            #expect(
                await peerSeen.received.allSatisfy { !$0.payloadString.contains("forged") && $0.topic != "status/b/x" })
            // The dynsec command had no effect: b still cannot read a's namespace.
            let retry = try await gw.connect(bCreds)
            #expect(MQTTClient.isRefusal(try await retry.subscribe("vgw/a/#")))
            await retry.disconnect()
            await attacker.disconnect()
            await peer.disconnect()
            await observer.disconnect()
        }
    }

    @Test func providerCannotLeaveWillOrRetainedOutsideItsNamespace() async throws {
        try await GatewayFixture.with { gw in
            let (aCreds, bCreds) = try await Self.victimAndAttacker(gw)
            let attacker = try await gw.connect(bCreds)
            try await attacker.publish(topic: "vgw/a/retained", string: "forged", qos: .atLeastOnce, retain: true)
            try await attacker.publish(topic: "status/b/retained", string: "forged", qos: .atLeastOnce, retain: true)
            await attacker.disconnect()

            let observer = try await gw.connect(aCreds)
            let seen = Inbox(observer)
            #expect(try await observer.subscribe("vgw/a/#") == 1)
            // A will outside the namespace: either the broker refuses the connection or it
            // drops the will; either way nothing reaches `a` when the connection dies.
            let will = MQTTWill(topic: "vgw/a/will", payload: Array("forged-will".utf8), qos: .atLeastOnce)
            if let dying = try? await gw.connect(bCreds, will: will) {
                dying._simulateConnectionLoss()
            }
            // An allowed will, to prove wills do fire in this setup: b's own peer sees it.
            let peerCreds = try await gw.addClient("b", "peer")
            let peer = try await gw.connect(peerCreds)
            let peerSeen = Inbox(peer)
            #expect(try await peer.subscribe("vgw/b/#") == 1)
            let ownWill = MQTTWill(topic: "vgw/b/will", payload: Array("own-will".utf8), qos: .atLeastOnce)
            let dying = try await gw.connect(bCreds, will: ownWill)
            dying._simulateConnectionLoss()
            _ = try await peerSeen.message(on: "vgw/b/will")

            try await observer.publish(topic: "vgw/a/sentinel", string: "done", qos: .atLeastOnce)
            _ = try await seen.message(on: "vgw/a/sentinel")
            #expect(await seen.topics() == ["vgw/a/sentinel"])
            // b's status subtree holds only what the core published: no forged retained.
            let statusReader = try await gw.connect(peerCreds)
            let statusSeen = Inbox(statusReader)
            #expect(try await statusReader.subscribe("status/b/#") == 1)
            _ = try await statusSeen.message(on: "status/b/state")
            try await statusReader.publish(topic: "vgw/b/sentinel", string: "x", qos: .atLeastOnce)
            #expect(try await statusReader.subscribe("vgw/b/sentinel") == 1)
            try await statusReader.publish(topic: "vgw/b/sentinel", string: "x", qos: .atLeastOnce)
            _ = try await statusSeen.message(on: "vgw/b/sentinel")
            let statusTopics = Set(await statusSeen.topics().filter { $0.hasPrefix("status/") })
            #expect(statusTopics.isSubset(of: ["status/b/state", "status/b/grants"]), "\(statusTopics)")
            #expect(await statusSeen.received.allSatisfy { $0.payloadString != "forged" })
            await statusReader.disconnect()
            await peer.disconnect()
            await observer.disconnect()
        }
    }

    @Test func identitiesCannotBeBorrowedOrGuessed() async throws {
        try await GatewayFixture.with { gw in
            let (aCreds, bCreds) = try await Self.victimAndAttacker(gw)
            let a = try await gw.connect(aCreds)
            func refused(_ attempt: () async throws -> MQTTClient) async -> Bool {
                do {
                    let client = try await attempt()
                    await client.disconnect()
                    return false
                } catch {
                    return true
                }
            }
            // b's credentials with a's client id (a session takeover attempt).
            #expect(await refused { try await gw.connect(bCreds, clientID: aCreds.clientId) })
            #expect(await refused { try await gw.connect(bCreds, clientID: aCreds.clientId, version: .v311) })
            // a's username with a wrong password, or with b's password.
            #expect(await refused { try await gw.connect(aCreds, password: "wrong") })
            #expect(await refused { try await gw.connect(aCreds, password: bCreds.password) })
            // Anonymous, and an unknown user.
            #expect(
                await refused {
                    try await MQTTClient.connected(
                        MQTTConfiguration(port: Int(gw.port), clientID: "anon", reconnect: false))
                })
            #expect(
                await refused {
                    try await MQTTClient.connected(
                        MQTTConfiguration(
                            port: Int(gw.port), clientID: "core.vgwd", username: "core.vgwd", password: "guess",
                            reconnect: false))
                })
            // a was never kicked by any of it.
            #expect(a.isConnected)
            #expect(try await a.publish(topic: "vgw/a/alive", string: "yes", qos: .atLeastOnce) < 0x80)
            await a.disconnect()
        }
    }

    @Test func providerCanDoAllOfItInsideItsNamespace() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("b")
            let one = try await gw.addClient("b", "one")
            let two = try await gw.addClient("b", "two")
            let reader = try await gw.connect(two)
            let seen = Inbox(reader)
            for filter in ["vgw/b/#", "vgw/b/+/x", "$share/g/vgw/b/shared/#", "status/b/#"] {
                #expect(!MQTTClient.isRefusal(try await reader.subscribe(filter)), "\(filter)")
            }
            let writer = try await gw.connect(one, version: .v311)
            try await writer.publish(topic: "vgw/b/room/x", string: "hello", qos: .exactlyOnce)
            try await writer.publish(topic: "vgw/b/shared/job", string: "work", qos: .atLeastOnce)
            try await writer.publish(topic: "vgw/b/kept", string: "retained", qos: .atLeastOnce, retain: true)
            #expect(try await seen.message(on: "vgw/b/room/x").payloadString == "hello")
            #expect(try await seen.message(on: "vgw/b/shared/job").payloadString == "work")
            _ = try await seen.message(on: "status/b/state")
            let late = try await gw.connect(one)
            let lateSeen = Inbox(late)
            #expect(try await late.subscribe("vgw/b/kept") == 1)
            let kept = try await lateSeen.message(on: "vgw/b/kept")
            #expect(kept.retain && kept.payloadString == "retained")
            let willClient = try await gw.connect(
                one, will: MQTTWill(topic: "vgw/b/gone", payload: Array("bye".utf8), qos: .atLeastOnce))
            willClient._simulateConnectionLoss()
            #expect(try await seen.message(on: "vgw/b/gone").payloadString == "bye")
            // And it manages its own VGW.
            let management = try await gw.providerManagement(one)
            let alive = try await management.call("vgw.isAlive")
            #expect(alive["alive"]?.boolValue == true)
            await management.close()
            await late.disconnect()
            await writer.disconnect()
            await reader.disconnect()
        }
    }
}
