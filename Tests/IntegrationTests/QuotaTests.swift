import Foundation
import Gateway
import MQTT
import Protocol
import Support
import TestSupport
import Testing

/// Quotas enforced in the broker by the metering plugin: a provider over its message rate
/// is throttled (its excess publishes dropped), the event is accounted, others are unaffected.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct QuotaTests {
    @Test func overQuotaProviderIsThrottledAndOthersAreNot() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("noisy")
            try await gw.createProvider("calm")
            let set = try await gw.admin.call(
                "quota.set", ["provider": "noisy", "messagesPerSecond": 20, "bytesPerSecond": 0])
            #expect(set["messagesPerSecond"] == 20)
            #expect(try await gw.admin.call("quota.get", ["provider": "noisy"])["messagesPerSecond"] == 20)

            func pair(_ provider: String) async throws -> (MQTTClient, MQTTClient, Inbox) {
                let publisher = try await gw.connect(try await gw.addClient(provider, "pub"))
                let subscriber = try await gw.connect(try await gw.addClient(provider, "sub"))
                let inbox = Inbox(subscriber)
                #expect(try await subscriber.subscribe("vgw/\(provider)/#", qos: .atMostOnce) == 0)
                return (publisher, subscriber, inbox)
            }
            let (noisy, noisySub, noisySeen) = try await pair("noisy")
            let (calm, calmSub, calmSeen) = try await pair("calm")
            for index in 0..<200 {
                try await noisy.publish(topic: "vgw/noisy/x", string: "\(index)", qos: .atMostOnce)
                try await calm.publish(topic: "vgw/calm/x", string: "\(index)", qos: .atMostOnce)
            }
            try await calm.publish(topic: "vgw/calm/end", string: "end", qos: .atLeastOnce)
            _ = try await calmSeen.message(on: "vgw/calm/end", timeout: .seconds(10))
            // The calm provider got everything; the noisy one about its quota's burst.
            #expect(await calmSeen.count(on: "vgw/calm/x") == 200)
            let delivered = await noisySeen.count(on: "vgw/noisy/x")
            #expect(delivered >= 5 && delivered <= 60, "noisy delivered \(delivered) of 200")

            // The throttling is in the provider's accounting and in perf.get's traffic.
            let deadline = ContinuousClock.now + .seconds(10)
            var events: [JSONValue] = []
            while events.isEmpty, ContinuousClock.now < deadline {
                events = try await gw.admin.call("acct.usage", ["provider": "noisy"])["events"]?.arrayValue ?? []
                try await Task.sleep(for: .milliseconds(200))  // the broker reports once a second
            }
            #expect(events.first?["kind"] == "quota.exceeded")
            let perf = try await gw.admin.call("perf.get", ["provider": "calm"])
            #expect((perf["traffic"]?["messagesIn"]?.intValue ?? 0) >= 201)
            #expect(try await gw.admin.call("acct.usage", ["provider": "calm"])["events"] == [])
            // The provider reads its quota, but cannot set it.
            let own = try await gw.providerManagement(try await gw.addClient("noisy", "app"))
            #expect(try await own.call("quota.get")["messagesPerSecond"] == 20)
            #expect(try await own.send("quota.set", ["messagesPerSecond": 0]).error?.code == .unknownOp)
            await own.close()
            for client in [noisy, noisySub, calm, calmSub] { await client.disconnect() }
        }
    }

    @Test func badQuotasAreRefused() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("p")
            for (args, code) in [
                (["provider": "p", "messagesPerSecond": -1] as [String: JSONValue], VGWError.Code.invalidArgument),
                (["provider": "p", "bytesPerSecond": "lots"], .invalidArgument),
                (["provider": "ghost", "messagesPerSecond": 1], .notFound),
                (["provider": "p", "burst": 1], .invalidArgument),
            ] {
                #expect(try await gw.admin.send("quota.set", args).error?.code == code, "\(args)")
            }
        }
    }
}
