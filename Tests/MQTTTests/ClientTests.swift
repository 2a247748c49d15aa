import Foundation
import MQTT
import Support
import TestSupport
import Testing

func config(
    _ broker: BrokerFixture, _ id: String, version: MQTTProtocolVersion = .v5, username: String? = nil,
    password: String? = nil
) -> MQTTConfiguration {
    MQTTConfiguration(
        port: Int(broker.port), clientID: "\(id)-\(UUID().uuidString.prefix(8))", username: username,
        password: password,
        protocolVersion: version, operationTimeout: .seconds(5))
}

/// A connected client with its streams being consumed in the background.
struct Connected: Sendable {
    let client: MQTTClient
    let messages: Inbox<MQTTMessage>
    let events: Inbox<MQTTEvent>

    init(_ configuration: MQTTConfiguration) async throws {
        client = try MQTTClient(configuration)
        messages = Inbox(client.messages)
        events = Inbox(client.events)
        try await client.connect()
        let first = try await events.next()
        #expect(first == .connected(sessionPresent: false))
    }
}

@Suite("MQTT client against a real mosquitto", .serialized, .timeLimit(.minutes(1)))
struct ClientTests {
    @Test(arguments: [MQTTProtocolVersion.v5, .v311])
    func connectAndDisconnect(version: MQTTProtocolVersion) async throws {
        try await BrokerFixture.withBroker { broker in
            let connected = try await Connected(config(broker, "conn", version: version))
            #expect(connected.client.isConnected)
            await connected.client.disconnect()
            #expect(!connected.client.isConnected)
            #expect(try await connected.events.next() == .disconnected(reasonCode: 0))
            #expect(await connected.events.waitForEnd())
            #expect(await connected.messages.waitForEnd())
            // Idempotent.
            await connected.client.disconnect()
            await #expect(throws: VGWError.self) { try await connected.client.connect() }
        }
    }

    @Test func convenienceConstructorAndDeinitWithoutDisconnect() async throws {
        try await BrokerFixture.withBroker { broker in
            var client: MQTTClient? = try await MQTTClient.connected(config(broker, "conv"))
            #expect(client?.isConnected == true)
            // Dropping a connected client must stop its network thread and free it.
            client = nil
            #expect(client == nil)
        }
    }

    @Test(arguments: [MQTTProtocolVersion.v5, .v311], QoS.allCases)
    func roundTrip(version: MQTTProtocolVersion, qos: QoS) async throws {
        try await BrokerFixture.withBroker { broker in
            let subscriber = try await Connected(config(broker, "sub", version: version))
            let publisher = try await Connected(config(broker, "pub", version: version))
            let granted = try await subscriber.client.subscribe("rt/#", qos: qos)
            #expect(granted == qos.rawValue)
            #expect(!MQTTClient.isRefusal(granted))

            let binary: [UInt8] = Array(0...255) + [0, 0, 0xff]
            let payloads: [[UInt8]] = [Array("hello".utf8), binary, []]
            for (index, payload) in payloads.enumerated() {
                let code = try await publisher.client.publish(
                    topic: "rt/\(index)", payload: payload, qos: qos)
                #expect(MQTTClient.isSuccess(code))
            }
            for (index, payload) in payloads.enumerated() {
                let message = try await subscriber.messages.next()
                #expect(message.topic == "rt/\(index)")
                #expect(message.payload == payload)
                #expect(message.qos == qos)
                #expect(!message.retain)
            }
            await publisher.client.disconnect()
            await subscriber.client.disconnect()
        }
    }

    @Test(arguments: [MQTTProtocolVersion.v5, .v311])
    func manyConcurrentPublishesAreAllAcknowledgedAndDelivered(version: MQTTProtocolVersion)
        async throws
    {
        try await BrokerFixture.withBroker { broker in
            let subscriber = try await Connected(config(broker, "sub", version: version))
            let publisher = try await Connected(config(broker, "pub", version: version))
            try await subscriber.client.subscribe("load/#", qos: .exactlyOnce)
            let count = 300
            let codes = try await withThrowingTaskGroup(of: UInt8.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await publisher.client.publish(
                            topic: "load/\(index)", string: "\(index)",
                            qos: index % 2 == 0 ? .atLeastOnce : .exactlyOnce)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(codes.count == count)
            #expect(
                codes.allSatisfy { $0 == 0 },
                "\(Dictionary(grouping: codes, by: { $0 }).mapValues(\.count))")
            var seen = Set<String>()
            for _ in 0..<count {
                seen.insert(try await subscriber.messages.next().payloadString)
            }
            #expect(seen.count == count)
            await publisher.client.disconnect()
            await subscriber.client.disconnect()
        }
    }

    @Test func publishWithoutSubscribersReportsNoMatchingSubscribers() async throws {
        try await BrokerFixture.withBroker { broker in
            let publisher = try await Connected(config(broker, "pub"))
            let code = try await publisher.client.publish(
                topic: "nobody/listens", string: "x", qos: .atLeastOnce)
            #expect(code == 0x10)
            #expect(MQTTClient.isSuccess(code))
            await publisher.client.disconnect()
        }
    }

    @Test func retainedMessageReachesLaterSubscriber() async throws {
        try await BrokerFixture.withBroker { broker in
            let publisher = try await Connected(config(broker, "pub"))
            try await publisher.client.publish(
                topic: "state/lamp", string: "on", qos: .atLeastOnce, retain: true)
            let subscriber = try await Connected(config(broker, "sub"))
            try await subscriber.client.subscribe("state/+")
            let message = try await subscriber.messages.next()
            #expect(message.topic == "state/lamp")
            #expect(message.payloadString == "on")
            #expect(message.retain)
            await publisher.client.disconnect()
            await subscriber.client.disconnect()
        }
    }

    @Test(arguments: [MQTTProtocolVersion.v5, .v311])
    func willIsPublishedWhenTheConnectionDies(version: MQTTProtocolVersion) async throws {
        try await BrokerFixture.withBroker { broker in
            let watcher = try await Connected(config(broker, "watch"))
            try await watcher.client.subscribe("status/#")

            var configuration = config(broker, "mortal", version: version)
            configuration.will = MQTTWill(
                topic: "status/mortal", payload: Array("offline".utf8), qos: .atLeastOnce)
            configuration.reconnect = false
            let mortal = try await Connected(configuration)
            mortal.client._simulateConnectionLoss()
            let will = try await watcher.messages.next()
            #expect(will.topic == "status/mortal")
            #expect(will.payloadString == "offline")
            let event = try await mortal.events.next()
            guard case .disconnected(let code) = event else {
                Issue.record("expected a disconnection, got \(event)")
                return
            }
            #expect(code != 0)
            #expect(!mortal.client.isConnected)
            await mortal.client.disconnect()
            await watcher.client.disconnect()
        }
    }

    @Test func cleanDisconnectDoesNotPublishTheWill() async throws {
        try await BrokerFixture.withBroker { broker in
            let watcher = try await Connected(config(broker, "watch"))
            try await watcher.client.subscribe("status/#")
            var configuration = config(broker, "polite")
            configuration.will = MQTTWill(topic: "status/polite", payload: Array("offline".utf8))
            let polite = try await Connected(configuration)
            await polite.client.disconnect()
            // The marker comes after the would-be will: if the will was sent, it arrives first.
            let marker = try await Connected(config(broker, "marker"))
            try await marker.client.publish(topic: "status/marker", string: "m")
            #expect(try await watcher.messages.next().topic == "status/marker")
            await marker.client.disconnect()
            await watcher.client.disconnect()
        }
    }

    @Test func responseTopicAndCorrelationDataRoundTrip() async throws {
        try await BrokerFixture.withBroker { broker in
            let responder = try await Connected(config(broker, "responder"))
            let requester = try await Connected(config(broker, "requester"))
            try await responder.client.subscribe("svc/request")
            try await requester.client.subscribe("svc/reply/requester")
            let correlation: [UInt8] = [0, 1, 2, 0xfe, 0xff]
            try await requester.client.publish(
                topic: "svc/request", string: "{\"op\":\"ping\"}", responseTopic: "svc/reply/requester",
                correlationData: correlation)
            let request = try await responder.messages.next()
            #expect(request.responseTopic == "svc/reply/requester")
            #expect(request.correlationData == correlation)
            let replyTopic = try #require(request.responseTopic)
            try await responder.client.publish(
                topic: replyTopic, string: "pong", correlationData: request.correlationData)
            let reply = try await requester.messages.next()
            #expect(reply.payloadString == "pong")
            #expect(reply.correlationData == correlation)
            #expect(reply.responseTopic == nil)
            await responder.client.disconnect()
            await requester.client.disconnect()
        }
    }

    @Test func responseTopicNeedsMQTT5() async throws {
        try await BrokerFixture.withBroker { broker in
            let old = try await Connected(config(broker, "old", version: .v311))
            await #expect(throws: VGWError.self) {
                try await old.client.publish(topic: "a", string: "x", responseTopic: "b")
            }
            await old.client.disconnect()
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        try await BrokerFixture.withBroker { broker in
            let client = try await Connected(config(broker, "unsub"))
            try await client.client.subscribe("a/#")
            try await client.client.subscribe("marker")
            #expect(Set(client.client.subscriptions.keys) == ["a/#", "marker"])
            try await client.client.unsubscribe("a/#")
            #expect(Set(client.client.subscriptions.keys) == ["marker"])
            try await client.client.publish(topic: "a/b", string: "dropped")
            try await client.client.publish(topic: "marker", string: "m")
            #expect(try await client.messages.next().topic == "marker")
            await client.client.disconnect()
        }
    }

    @Test func subscribeToSeveralFilters() async throws {
        try await BrokerFixture.withBroker { broker in
            let client = try await Connected(config(broker, "multi"))
            let codes = try await client.client.subscribe(["x/1", "x/2"], qos: .exactlyOnce)
            #expect(codes == [2, 2])
            try await client.client.publish(topic: "x/2", string: "two")
            #expect(try await client.messages.next().topic == "x/2")
            await client.client.disconnect()
        }
    }

    @Test func invalidTopicsAreRefusedLocally() async throws {
        try await BrokerFixture.withBroker { broker in
            let client = try await Connected(config(broker, "invalid"))
            await #expect(throws: VGWError.self) { try await client.client.subscribe("a/#/b") }
            await #expect(throws: VGWError.self) {
                try await client.client.publish(topic: "a/+", string: "x")
            }
            #expect(client.client.isConnected)
            await client.client.disconnect()
        }
    }
}
