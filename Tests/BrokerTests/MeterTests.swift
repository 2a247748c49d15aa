import Foundation
import MQTT
import Protocol
import Support
import Synchronization
import TestSupport
import Testing

@testable import Broker

/// The meter plugin (libvgw_meter.so) in a real mosquitto, loaded before dynamic security.
@Suite(.serialized) struct MeterTests {
    static let password = "pw-secret"
    /// The core's own client: not metered, may drive the meter's control topic.
    static let core = BrokerFixture.User(
        "core.test", password: password, acls: ACL.readWrite("$CONTROL/vgw-meter/#") + ACL.readWrite("vgw/#"))
    static let users = [
        core,
        BrokerFixture.User("acme.x", password: password, acls: ACL.readWrite("vgw/acme/#")),
        BrokerFixture.User("acme.y", password: password, acls: ACL.readWrite("vgw/acme/#")),
    ]

    static func pluginPath() throws -> String {
        try #require(BrokerConfiguration.locateMeterPlugin(), "libvgw_meter.so not built beside the test binary")
    }

    /// A connected client whose messages are collected in the background.
    final class Received: Sendable {
        let messages = Mutex<[MQTTMessage]>([])
    }

    final class Peer: Sendable {
        let client: MQTTClient
        let received = Received()
        let pump: Task<Void, Never>

        init(_ broker: BrokerFixture, _ username: String, onMessage: (@Sendable (MQTTMessage) -> Void)? = nil)
            async throws
        {
            client = try await MQTTClient.connected(
                MQTTConfiguration(
                    host: broker.host, port: Int(broker.port), clientID: username, username: username,
                    password: MeterTests.password, reconnect: false))
            let messages = client.messages
            let received = self.received
            pump = Task {
                for await message in messages {
                    onMessage?(message)
                    received.messages.withLock { $0.append(message) }
                }
            }
        }

        func messages(on prefix: String) -> [MQTTMessage] {
            received.messages.withLock { $0.filter { $0.topic.hasPrefix(prefix) } }
        }

        func close() async {
            await client.disconnect()
            pump.cancel()
        }
    }

    /// Polls `condition` every 50 ms for at most `limit`.
    static func eventually(within limit: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows
        -> Bool
    {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    /// Runs `body` with the broker, the core's peer and a MeterClient routed through it.
    static func withMeter(_ body: (BrokerFixture, Peer, MeterClient) async throws -> Void) async throws {
        let plugin = try pluginPath()
        try await BrokerFixture.withBroker(anonymous: false, users: users, meterPlugin: plugin) { broker in
            let box = Mutex<MeterClient?>(nil)
            let core = try await Peer(broker, Self.core.username) { message in
                if message.topic == MeterTopics.response { box.withLock { $0 }?.deliver(message.payload) }
            }
            let meter = MeterClient(timeout: .seconds(5)) { payload in
                try await core.client.publish(topic: MeterTopics.control, payload: payload)
            }
            box.withLock { $0 = meter }
            _ = try await core.client.subscribe(["$CONTROL/vgw-meter/v1/#"])
            do {
                try await body(broker, core, meter)
                await core.close()
            } catch {
                await core.close()
                throw error
            }
        }
    }

    @Test func configurationLoadsTheMeterBeforeDynamicSecurity() {
        let config = BrokerConfiguration(directory: "/d", meterPlugin: "/x/libvgw_meter.so")
        let lines = config.render().split(separator: "\n").map(String.init)
        let meter = lines.firstIndex(of: "plugin /x/libvgw_meter.so")
        let dynsec = lines.firstIndex(of: "plugin " + BrokerConfiguration.debianDynamicSecurityPlugin)
        #expect(meter != nil && dynsec != nil && meter! < dynsec!)
        #expect(!BrokerConfiguration(directory: "/d").render().contains("vgw_meter"))
        #expect(AccessPolicy.daemonACLs.contains(ACL(.publishClientSend, "$CONTROL/vgw-meter/#")))
    }

    @Test func commandsAndStatsParse() throws {
        let payload = try MeterTopics.payload([
            .setQuota(provider: "acme", messagesPerSecond: 100, bytesPerSecond: 100_000), .removeProvider("acme"),
            .getStats,
        ]) { "b:\($0)" }
        let value = try JSONCoding.decoder.decode(JSONValue.self, from: Data(payload))
        let commands = try #require(value["commands"]?.arrayValue)
        #expect(commands.map { $0["command"]?.stringValue } == ["setQuota", "removeProvider", "getStats"])
        #expect(commands[0]["messagesPerSecond"]?.intValue == 100)
        #expect(commands[0]["bytesPerSecond"]?.intValue == 100_000)
        #expect(commands[1]["provider"]?.stringValue == "acme")
        #expect(commands[2]["correlationData"]?.stringValue == "b:2")
        let stats = try MeterTopics.parseStats(
            Array(
                #"{"providers":{"acme":{"messagesIn":3,"bytesIn":15,"messagesOut":2,"bytesOut":10,"denied":1,"messagesPerSecond":0}}}"#
                    .utf8))
        #expect(stats == ["acme": ProviderTraffic(messagesIn: 3, bytesIn: 15, messagesOut: 2, bytesOut: 10, denied: 1)])
        #expect(throws: VGWError.self) { try MeterTopics.parseStats(Array("{bad".utf8)) }
    }

    @Test func countsMessagesAndBytesInAndOut() async throws {
        try await Self.withMeter { broker, core, meter in
            let x = try await Peer(broker, "acme.x")
            let y = try await Peer(broker, "acme.y")
            #expect(try await y.client.subscribe("vgw/acme/#") == 1)
            let count = 25
            var bytes: UInt64 = 0
            for i in 0..<count {
                let payload = Array("reading-\(i)".utf8)
                bytes += UInt64(payload.count)
                #expect(MQTTClient.isSuccess(try await x.client.publish(topic: "vgw/acme/sensor", payload: payload)))
            }
            #expect(await Self.eventually { y.messages(on: "vgw/acme/").count == count })
            let expected = ProviderTraffic(
                messagesIn: UInt64(count), bytesIn: bytes, messagesOut: UInt64(count), bytesOut: bytes, denied: 0)
            #expect(try await meter.stats()["acme"] == expected)
            // The periodic stats (1 s) reach the core too, and parse.
            #expect(
                await Self.eventually {
                    core.messages(on: MeterTopics.stats).contains {
                        (try? MeterTopics.parseStats($0.payload))?["acme"] == expected
                    }
                })
            await x.close()
            await y.close()
        }
    }

    @Test func quotaThrottlesABurst() async throws {
        try await Self.withMeter { broker, _, meter in
            try await meter.setQuota(provider: "acme", messagesPerSecond: 10, bytesPerSecond: 0)
            let x = try await Peer(broker, "acme.x")
            let y = try await Peer(broker, "acme.y")
            #expect(try await y.client.subscribe("vgw/acme/#") == 1)
            var accepted = 0
            for i in 0..<100 {
                let code = try await x.client.publish(topic: "vgw/acme/burst", payload: Array("b\(i)".utf8))
                if MQTTClient.isSuccess(code) { accepted += 1 }
            }
            try await Task.sleep(for: .milliseconds(500))
            let delivered = y.messages(on: "vgw/acme/").count
            let stats = try #require(try await meter.stats()["acme"])
            #expect((5...40).contains(accepted), "accepted \(accepted)")
            #expect(delivered == accepted)
            #expect((60...95).contains(stats.denied), "denied \(stats.denied)")
            #expect(stats.denied + stats.messagesIn == 100)
            #expect(stats.messagesOut == UInt64(delivered))
            // Removing the provider lifts the quota.
            try await meter.removeProvider("acme")
            for _ in 0..<30 {
                #expect(MQTTClient.isSuccess(try await x.client.publish(topic: "vgw/acme/free", payload: [1])))
            }
            #expect(try await meter.stats()["acme"]?.denied == 0)
            await x.close()
            await y.close()
        }
    }

    @Test func dynamicSecurityStillDecides() async throws {
        try await Self.withMeter { broker, _, meter in
            let x = try await Peer(broker, "acme.x")
            #expect(MQTTClient.isRefusal(try await x.client.subscribe("#")))
            #expect(MQTTClient.isRefusal(try await x.client.subscribe("vgw/other/#")))
            #expect(!MQTTClient.isRefusal(try await x.client.subscribe("vgw/acme/#")))
            #expect(!MQTTClient.isSuccess(try await x.client.publish(topic: "vgw/other/t", payload: [1])))
            #expect(MQTTClient.isSuccess(try await x.client.publish(topic: "vgw/acme/t", payload: [1])))
            #expect(await Self.eventually { x.messages(on: "vgw/acme/t").count == 1 })
            // Metered but not authorized: the meter passed both publishes, dynsec refused one.
            #expect(try await meter.stats()["acme"]?.messagesIn == 2)
            await x.close()
        }
    }

    @Test func malformedControlPayloadsGetErrors() async throws {
        try await Self.withMeter { broker, core, meter in
            let bad: [[UInt8]] = [
                Array("{bad".utf8), Array(#"{"commands":"x"}"#.utf8), Array("[1,2]".utf8), [0xff, 0x00, 0x7b],
                Array(
                    #"{"commands":[{"command":"setQuota","provider":"acme","messagesPerSecond":-1,"bytesPerSecond":0}]}"#
                        .utf8),
                Array(#"{"commands":[{"command":"setQuota","provider":7}, 5, {"command":"nope"}]}"#.utf8),
                Array(#"{"commands":[{"command":"removeProvider","provider":"a.b"}]}"#.utf8),
            ]
            for payload in bad {
                try await core.client.publish(topic: MeterTopics.control, payload: payload)
            }
            #expect(await Self.eventually { core.messages(on: MeterTopics.response).count >= bad.count })
            for message in core.messages(on: MeterTopics.response) {
                let value = try JSONCoding.decoder.decode(JSONValue.self, from: Data(message.payload))
                let responses = try #require(value["responses"]?.arrayValue)
                #expect(responses.allSatisfy { $0["error"]?.stringValue != nil }, "\(message.payloadString)")
            }
            await #expect(throws: VGWError.self) { try await meter.execute([MeterCommand("nope")]) }
            // Still running and answering.
            #expect(try await meter.stats() == [:])
            #expect(await broker.supervisor.pid != nil)
        }
    }

    @Test func coreClientsAreNeitherMeteredNorThrottled() async throws {
        try await Self.withMeter { broker, core, meter in
            try await meter.setQuota(provider: "core", messagesPerSecond: 1, bytesPerSecond: 1)
            let y = try await Peer(broker, "acme.y")
            #expect(try await y.client.subscribe("vgw/acme/#") == 1)
            for i in 0..<20 {
                #expect(
                    MQTTClient.isSuccess(
                        try await core.client.publish(topic: "vgw/acme/cmd", payload: Array("c\(i)".utf8))))
            }
            #expect(await Self.eventually { y.messages(on: "vgw/acme/cmd").count == 20 })
            let stats = try await meter.stats()
            #expect(stats["core"] == ProviderTraffic())
            // Delivery to the provider's client is the provider's traffic out.
            #expect(stats["acme"]?.messagesOut == 20)
            #expect(stats["acme"]?.messagesIn == 0)
            await y.close()
        }
    }
}
