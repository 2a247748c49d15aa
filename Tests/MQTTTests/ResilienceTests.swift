import Broker
import Foundation
import MQTT
import Support
import TestSupport
import Testing

@Suite("MQTT client: refusals, reconnects, timeouts", .serialized, .timeLimit(.minutes(1)))
struct ResilienceTests {
    /// A dynamic-security broker: anonymous clients are refused, alice may connect.
    static let users = [BrokerFixture.User("alice", password: "secret")]

    struct AuthCase: Sendable, CustomTestStringConvertible {
        var version: MQTTProtocolVersion
        var username: String?
        var password: String?
        var expected: Int
        var text: String
        var testDescription: String { "\(version) \(username ?? "anonymous") → \(expected)" }
    }

    // mosquitto 2.0.x answers a wrong password and an unknown user with "not authorized"
    // (MQTT 5: 0x87, 3.1.1: 5), exactly like an anonymous client when anonymous access is
    // off; it never sends "bad username or password" (0x86 / 4) for password_file checks.
    // The mapping of those codes is covered by `reasonCodeMapping` below.
    static let authCases: [AuthCase] = [
        AuthCase(
            version: .v5, username: "alice", password: "wrong", expected: 0x87, text: "not authorized"),
        AuthCase(
            version: .v311, username: "alice", password: "wrong", expected: 5, text: "not authorized"),
        AuthCase(
            version: .v5, username: "mallory", password: "x", expected: 0x87, text: "not authorized"),
        AuthCase(
            version: .v311, username: "mallory", password: "x", expected: 5, text: "not authorized"),
        AuthCase(version: .v5, username: nil, password: nil, expected: 0x87, text: "not authorized"),
        AuthCase(version: .v311, username: nil, password: nil, expected: 5, text: "not authorized"),
    ]

    @Test func reasonCodeMapping() {
        let v5 = MQTTReasonCode(0x86, protocolVersion: .v5)
        #expect(v5.isBadCredentials && !v5.isNotAuthorized)
        #expect(v5.description.contains("0x86"))
        #expect(v5.description.lowercased().contains("bad user"))
        let v311 = MQTTReasonCode(4, protocolVersion: .v311)
        #expect(v311.isBadCredentials && !v311.isNotAuthorized)
        #expect(v311.description.hasSuffix("bad username or password"))
        #expect(MQTTReasonCode(0x87, protocolVersion: .v5).isNotAuthorized)
        #expect(MQTTReasonCode(5, protocolVersion: .v311).isNotAuthorized)
        #expect(MQTTReasonCode(0x87, protocolVersion: .v5).description.hasSuffix("not authorized"))
        #expect(!MQTTReasonCode(5, protocolVersion: .v5).isNotAuthorized)
    }

    @Test(arguments: authCases)
    func refusedConnection(_ testCase: AuthCase) async throws {
        try await BrokerFixture.withBroker(anonymous: false, users: Self.users) { broker in
            let client = try MQTTClient(
                config(
                    broker, "refused", version: testCase.version, username: testCase.username,
                    password: testCase.password))
            let events = Inbox(client.events)
            let error = await #expect(throws: VGWError.self) { try await client.connect() }
            #expect(error?.code == .mqtt)
            #expect(error?.message == "connection refused: \(testCase.text)")
            let reason = try #require(error?.mqttReasonCode)
            #expect(reason.value == testCase.expected)
            #expect(reason.isBadCredentials == (testCase.expected == 0x86 || testCase.expected == 4))
            #expect(reason.isNotAuthorized == (testCase.expected == 0x87 || testCase.expected == 5))
            #expect(!client.isConnected)
            #expect(try await events.next() == .connectionRefused(reason))
            await client.disconnect()
        }
    }

    @Test func rightPasswordIsAccepted() async throws {
        try await BrokerFixture.withBroker(anonymous: false, users: Self.users) { broker in
            let client = try await Connected(
                config(broker, "alice", username: "alice", password: "secret"))
            #expect(client.client.isConnected)
            await client.client.disconnect()
        }
    }

    @Test func connectWithoutBrokerFailsFast() async throws {
        let port = Int(try Ports.freePort())
        let client = try MQTTClient(MQTTConfiguration(port: port, clientID: "nobody"))
        let error = await #expect(throws: VGWError.self) { try await client.connect() }
        #expect(error?.code == .mqtt)
        #expect(!client.isConnected)
    }

    /// A client whose role allows `allowed/#` only; the default access denies the rest.
    static let restricted = BrokerFixture.User(
        "restricted", password: "restricted-secret",
        acls: [
            ACL(.subscribePattern, "allowed/#"), ACL(.publishClientSend, "allowed/#"),
            ACL(.publishClientReceive, "#"),
        ])

    @Test(arguments: [MQTTProtocolVersion.v5, .v311])
    func subscribeResultCodes(version: MQTTProtocolVersion) async throws {
        try await BrokerFixture.withBroker(anonymous: false, users: [Self.restricted]) { broker in
            let client = try await Connected(
                config(
                    broker, "acl", version: version, username: Self.restricted.username,
                    password: Self.restricted.password))
            let granted = try await client.client.subscribe("allowed/x", qos: .exactlyOnce)
            #expect(granted == 2)
            let refused = try await client.client.subscribe("denied/x")
            #expect(refused == (version == .v5 ? 0x87 : 0x80))
            #expect(MQTTClient.isRefusal(refused))
            #expect(client.client.subscriptions == ["allowed/x": .exactlyOnce])
            if version == .v5 {
                let code = try await client.client.publish(
                    topic: "denied/x", string: "x", qos: .atLeastOnce)
                #expect(code == 0x87)
                #expect(!MQTTClient.isSuccess(code))
            }
            await client.client.disconnect()
        }
    }

    @Test func sessionTakeoverIsReportedWithItsReasonCode() async throws {
        try await BrokerFixture.withBroker { broker in
            var configuration = config(broker, "twin")
            configuration.reconnect = false
            let first = try await Connected(configuration)
            let second = try await Connected(configuration)
            // MQTT 5 says the broker sends DISCONNECT 0x8E (session taken over); mosquitto 2.0.11
            // closes the socket right after queueing it, so libmosquitto usually reports 7
            // (connection lost). Either way the old connection must be reported as gone.
            let event = try await first.events.next()
            guard case .disconnected(let code) = event else {
                Issue.record("expected a disconnection, got \(event)")
                return
            }
            #expect(code == 0x8E || code == 7, "\(event)")
            #expect(!first.client.isConnected)
            #expect(second.client.isConnected)
            await first.client.disconnect()
            await second.client.disconnect()
        }
    }

    @Test func resubscribesAfterConnectionLoss() async throws {
        try await BrokerFixture.withBroker { broker in
            let subscriber = try await Connected(config(broker, "sub"))
            try await subscriber.client.subscribe("r/#")
            subscriber.client._simulateConnectionLoss()
            guard case .disconnected = try await subscriber.events.next() else {
                Issue.record("expected a disconnection")
                return
            }
            #expect(try await subscriber.events.next() == .connected(sessionPresent: false))
            #expect(subscriber.client.isConnected)
            let publisher = try await Connected(config(broker, "pub"))
            try await publisher.client.publish(topic: "r/1", string: "again")
            #expect(try await subscriber.messages.next().payloadString == "again")
            await publisher.client.disconnect()
            await subscriber.client.disconnect()
        }
    }

    @Test func reconnectsAndResubscribesAfterBrokerRestart() async throws {
        try await BrokerFixture.withBroker { broker in
            let subscriber = try await Connected(config(broker, "sub"))
            try await subscriber.client.subscribe("r/#", qos: .atLeastOnce)
            await broker.crash()
            guard case .disconnected = try await subscriber.events.next() else {
                Issue.record("expected a disconnection")
                return
            }
            #expect(!subscriber.client.isConnected)
            try await broker.start()
            #expect(
                try await subscriber.events.next(within: .seconds(10)) == .connected(sessionPresent: false))
            let publisher = try await Connected(config(broker, "pub"))
            try await publisher.client.publish(topic: "r/2", string: "back")
            let message = try await subscriber.messages.next()
            #expect(message.topic == "r/2")
            #expect(message.payloadString == "back")
            await publisher.client.disconnect()
            await subscriber.client.disconnect()
        }
    }

    @Test func operationsTimeOutWhenTheBrokerDoesNotAnswer() async throws {
        try await BrokerFixture.withBroker { broker in
            var configuration = config(broker, "slow")
            configuration.operationTimeout = .milliseconds(300)
            let client = try await Connected(configuration)
            await broker.pause()
            let start = ContinuousClock.now
            let publishError = await #expect(throws: VGWError.self) {
                try await client.client.publish(topic: "t", string: "x", qos: .atLeastOnce)
            }
            #expect(publishError?.code == .timeout)
            let subscribeError = await #expect(throws: VGWError.self) {
                try await client.client.subscribe("t")
            }
            #expect(subscribeError?.code == .timeout)
            #expect(ContinuousClock.now - start < .seconds(3))
            await broker.resume()
            await client.client.disconnect()
        }
    }

    @Test func connectTimesOutAgainstAFrozenBroker() async throws {
        try await BrokerFixture.withBroker { broker in
            var configuration = config(broker, "frozen")
            configuration.operationTimeout = .milliseconds(300)
            let client = try MQTTClient(configuration)
            await broker.pause()
            // The kernel still accepts the TCP connection; the CONNACK never comes.
            let error = await #expect(throws: VGWError.self) { try await client.connect() }
            #expect(error?.code == .timeout)
            #expect(!client.isConnected)
        }
    }

    @Test func refusalAfterAReconnectStopsTheClient() async throws {
        try await BrokerFixture.withBroker(anonymous: false, users: Self.users) { broker in
            let alice = try await Connected(
                config(broker, "alice", username: "alice", password: "secret"))
            await broker.crash()
            guard case .disconnected = try await alice.events.next() else {
                Issue.record("expected a disconnection")
                return
            }
            // The password changes while the broker is down: the automatic reconnect is refused.
            try broker.setPassword(user: "alice", password: "changed")
            try await broker.start()
            let refused = try await alice.events.first(within: .seconds(10)) {
                if case .connectionRefused = $0 { return true }
                return false
            }
            #expect(refused == .connectionRefused(MQTTReasonCode(0x87, protocolVersion: .v5)))
            #expect(!alice.client.isConnected)
            // No further attempts: with the minimum 1 s reconnect delay, a retry would show up
            // in the broker log within 2 s. (A negative check can only be bounded by waiting.)
            let attempts = broker.connectionCount
            try await Task.sleep(for: .milliseconds(2200))
            #expect(broker.connectionCount == attempts, "\(broker.log)")
            await alice.client.disconnect()
        }
    }

    @Test func restartsTheNetworkLoopAfterAFatalProtocolError() async throws {
        let fake = try FakeBroker()
        defer { fake.stop() }
        let client = try MQTTClient(MQTTConfiguration(port: fake.port, clientID: "fatal"))
        let events = Inbox(client.events)
        try await client.connect()
        #expect(try await events.next() == .connected(sessionPresent: false))
        // libmosquitto's own loop gives up after a protocol error (MOSQ_ERR_PROTOCOL = 2).
        #expect(try await events.next() == .disconnected(reasonCode: 2))
        #expect(try await events.next(within: .seconds(5)) == .connected(sessionPresent: false))
        #expect(fake.connections == 2)
        #expect(client.isConnected)
        await client.disconnect()
    }

    @Test func publishFailsOrTimesOutWhenTheBrokerIsGone() async throws {
        try await BrokerFixture.withBroker { broker in
            var configuration = config(broker, "orphan")
            configuration.operationTimeout = .milliseconds(300)
            let client = try await Connected(configuration)
            await broker.crash()
            guard case .disconnected = try await client.events.next() else {
                Issue.record("expected a disconnection")
                return
            }
            let error = await #expect(throws: VGWError.self) {
                try await client.client.publish(topic: "t", string: "x", qos: .atLeastOnce)
            }
            #expect(error?.code == .timeout || error?.code == .mqtt)
            await #expect(throws: VGWError.self) { try await client.client.subscribe("t") }
            await client.client.disconnect()
        }
    }

    @Test func cancellationEndsAWait() async throws {
        try await BrokerFixture.withBroker { broker in
            let client = try await Connected(config(broker, "cancel"))
            await broker.pause()
            let task = Task {
                try await client.client.publish(topic: "t", string: "x", qos: .exactlyOnce)
            }
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            await broker.resume()
            await client.client.disconnect()
        }
    }
}

extension BrokerFixture {
    /// How many TCP connections the broker has logged so far, over all its runs.
    var connectionCount: Int {
        log.split(separator: "\n").filter { $0.contains("New connection from") }.count
    }
}
