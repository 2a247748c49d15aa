import Foundation
import MQTT
import Support
import TestSupport
import Testing
import VGWServiceKit

/// VGWService against a real (anonymous) Mosquitto, with the environment injected.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ServiceBrokerTests {
    static func environment(_ broker: BrokerFixture, bundle: String = "probe") throws -> ServiceEnvironment {
        try ServiceEnvironment(environment: [
            "VGW_MQTT_HOST": broker.host, "VGW_MQTT_PORT": String(broker.port), "VGW_MQTT_USERNAME": "svc",
            "VGW_MQTT_PASSWORD": "unused", "VGW_MQTT_CLIENT_ID": "svc-\(UUID().uuidString.prefix(6))",
            "VGW_TOPIC_PREFIX": "vgw/acme/", "VGW_PROVIDER": "acme", "VGW_BUNDLE": bundle,
            "VGW_BUNDLE_VERSION": "1.0.0", "VGW_STATE_DIR": FileManager.default.temporaryDirectory.path,
        ])
    }

    /// An observer on the whole namespace, with absolute topics.
    static func observer(_ broker: BrokerFixture) async throws -> (MQTTClient, Collector<MQTTMessage>) {
        let client = try await MQTTClient.connected(
            MQTTConfiguration(
                host: broker.host, port: Int(broker.port), clientID: "observer-\(UUID().uuidString.prefix(6))",
                reconnect: false, operationTimeout: .seconds(5)))
        let collector = Collector(client.messages)
        #expect(try await client.subscribe("vgw/acme/#") == 1)
        return (client, collector)
    }

    @Test func relativeTopicsRoundTripAndTheOnlineFlagIsSet() async throws {
        try await BrokerFixture.withBroker(anonymous: true) { broker in
            let (observer, seen) = try await Self.observer(broker)
            let service = try await VGWService.connect(environment: try Self.environment(broker))
            // The online flag, retained.
            let online = try await seen.first { $0.topic == "vgw/acme/_service/probe/online" }
            #expect(online?.payloadString == "true")

            // Publish relative, observed absolute.
            try await service.publish("living/temp", "21.5", retain: true)
            let reading = try await seen.first { $0.topic == "vgw/acme/living/temp" }
            #expect(reading?.payloadString == "21.5")

            // Subscribe relative, receive relative (including its own retained message).
            let commands = Collector(try await service.subscribe("cmd/#"))
            let readings = Collector(try await service.subscribe("+/temp"))
            #expect(try await readings.first()?.topic == "living/temp")
            _ = try await observer.publish(topic: "vgw/acme/cmd/ping", string: "p1")
            let ping = try await commands.first()
            #expect(ping?.topic == "cmd/ping" && ping?.payloadString == "p1")

            // Out-of-namespace topics are refused before anything is sent.
            await #expect(throws: VGWError.self) { try await service.publish("../other/x", "no") }
            await #expect(throws: VGWError.self) { try await service.publish("/vgw/other/x", "no") }
            await #expect(throws: VGWError.self) { try await service.subscribe("$SYS/#") }

            // The connection drops (as when dynsec kicks the client): the broker publishes the
            // will, the client reconnects, the flag is set again and the streams keep working.
            service.client._simulateConnectionLoss()
            #expect(try await seen.first { $0.topic == "vgw/acme/_service/probe/online" }?.payloadString == "false")
            #expect(try await seen.first { $0.topic == "vgw/acme/_service/probe/online" }?.payloadString == "true")
            _ = try await observer.publish(topic: "vgw/acme/cmd/ping", string: "p2")
            #expect(try await commands.first()?.payloadString == "p2")

            // A clean stop clears the flag (no will needed) and ends the streams.
            await service.disconnect()
            #expect(try await seen.first { $0.topic == "vgw/acme/_service/probe/online" }?.payloadString == "false")
            #expect(try await commands.first() == nil)
            await observer.disconnect()
        }
    }

    @Test func streamsSurviveABrokerRestart() async throws {
        try await BrokerFixture.withBroker(anonymous: true) { broker in
            let service = try await VGWService.connect(environment: try Self.environment(broker, bundle: "restart"))
            let commands = Collector(try await service.subscribe("cmd/#"))
            await broker.stop()
            try await broker.start()
            // The service reconnects with backoff (1 s, 2 s, ...) and, whether or not the broker kept
            // the session, ends up subscribed again: the same stream delivers. Nothing tells the
            // observer when the service is back, so it repeats the command, each wait bounded.
            let (observer, seen) = try await Self.observer(broker)
            var delivered: ServiceMessage?
            let deadline = ContinuousClock.now + .seconds(30)
            while delivered == nil, ContinuousClock.now < deadline {
                _ = try await observer.publish(topic: "vgw/acme/cmd/after", string: "back")
                delivered = try? await commands.first(within: .milliseconds(500))
            }
            #expect(delivered?.topic == "cmd/after")
            // The broker may first hand out the retained will ("false"); the service sets it again.
            let online = try await seen.first {
                $0.topic == "vgw/acme/_service/restart/online" && $0.payloadString == "true"
            }
            #expect(online != nil)
            await service.disconnect()
            await observer.disconnect()
        }
    }
}

/// Collects a stream's elements so that a test can wait (bounded) for one that matches,
/// each element being consumed once, in order.
actor Collector<Element: Sendable> {
    private var pending: [Element] = []
    private var ended = false
    private var waiter:
        (predicate: @Sendable (Element) -> Bool, continuation: CheckedContinuation<Element?, any Error>)?
    private var generation = 0

    init(_ stream: AsyncStream<Element>) {
        Task { [weak self] in
            for await element in stream { await self?.add(element) }
            await self?.end()
        }
    }

    private func add(_ element: Element) {
        pending.append(element)
        deliver()
    }

    private func end() {
        ended = true
        deliver()
    }

    private func deliver() {
        guard let waiter else { return }
        if let index = pending.firstIndex(where: waiter.predicate) {
            let element = pending[index]
            pending.removeSubrange(...index)
            self.waiter = nil
            waiter.continuation.resume(returning: element)
        } else if ended {
            pending.removeAll()
            self.waiter = nil
            waiter.continuation.resume(returning: nil)
        }
    }

    /// The next element matching `predicate` (skipping earlier ones), nil if the stream ended.
    func first(
        within timeout: Duration = .seconds(10), where predicate: @escaping @Sendable (Element) -> Bool = { _ in true }
    ) async throws -> Element? {
        generation += 1
        let mine = generation
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.expire(mine, timeout)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            waiter = (predicate, continuation)
            deliver()
        }
    }

    private func expire(_ mine: Int, _ timeout: Duration) {
        guard generation == mine, let waiter else { return }
        self.waiter = nil
        waiter.continuation.resume(throwing: VGWError(.timeout, "no matching element within \(timeout)"))
    }
}
