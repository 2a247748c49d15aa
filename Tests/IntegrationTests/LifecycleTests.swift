import Broker
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import TestSupport
import Testing

/// Stop, start and delete of a VGW, observed with live clients; state across restarts of
/// the daemon and of the broker.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LifecycleTests {
    static let isDisconnection: @Sendable (MQTTEvent) -> Bool = {
        if case .disconnected = $0 { return true }
        return false
    }

    @Test func stopDisconnectsAndRefusesUntilStarted() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("acme")
            try await gw.createProvider("other")
            let creds = try await gw.addClient("acme", "thermostat")
            let otherCreds = try await gw.addClient("other", "lamp")
            let live = try await gw.connect(creds)
            let bystander = try await gw.connect(otherCreds)
            let stopped = try await gw.admin.call("vgw.stop", ["provider": "acme"])
            #expect(stopped["state"]?.stringValue == "stopped")
            // The live client is disconnected by the broker...
            #expect(await firstMatch(live.events, where: Self.isDisconnection) != nil)
            // ...and refused while the VGW is stopped; the other provider is untouched.
            await #expect(throws: VGWError.self) { try await gw.connect(creds) }
            #expect(bystander.isConnected)
            #expect(try await gw.admin.call("vgw.isAlive", ["provider": "acme"])["alive"] == false)
            // Adding a client to a stopped VGW gives credentials that wait for the start.
            let late = try await gw.addClient("acme", "late")
            await #expect(throws: VGWError.self) { try await gw.connect(late) }

            _ = try await gw.admin.call("vgw.start", ["provider": "acme"])
            let back = try await gw.connect(creds)
            let lateBack = try await gw.connect(late)
            #expect(try await back.publish(topic: "vgw/acme/t", string: "21.5", qos: .atLeastOnce) < 0x80)
            #expect(try await gw.admin.call("vgw.isAlive", ["provider": "acme"])["alive"] == true)
            await back.disconnect()
            await lateBack.disconnect()
            await bystander.disconnect()
            await live.disconnect()
        }
    }

    @Test func deleteRemovesEveryIdentityAndACL() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("acme")
            let creds = try await gw.addClient("acme", "thermostat")
            let live = try await gw.connect(creds)
            let operatorView = try await ManagementFixture.statusWatcher(gw)
            _ = try await operatorView.inbox.message(on: "status/acme/state")
            let deleted = try await gw.admin.call("vgw.delete", ["provider": "acme"])
            #expect(deleted["clientsRemoved"]?.intValue == 1)
            #expect(await firstMatch(live.events, where: Self.isDisconnection) != nil)
            await #expect(throws: VGWError.self) { try await gw.connect(creds) }
            let missing = try await gw.admin.send("vgw.show", ["provider": "acme"])
            #expect(missing.error?.code == .notFound)
            // The retained status is cleared (an empty retained message).
            _ = try await operatorView.inbox.next { $0.topic == "status/acme/state" && $0.payload.isEmpty }
            // The same name can be created again, from scratch: old credentials stay dead.
            try await gw.createProvider("acme")
            await #expect(throws: VGWError.self) { try await gw.connect(creds) }
            #expect(try await gw.admin.call("client.list", ["provider": "acme"])["clients"] == [])
            await operatorView.client.disconnect()
            await live.disconnect()
        }
    }

    @Test func stateSurvivesDaemonRestartAndLostDynsecFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgw-restart-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try Ports.freePort(host: "127.0.0.1")
        let (a, b) = try await GatewayFixture.run(directory: directory, port: port) { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            let a = try await gw.addClient("a", "sensor")
            let b = try await gw.addClient("b", "sensor")
            _ = try await gw.admin.call("vgw.stop", ["provider": "b"])
            return (a, b)
        }
        // Restarted: providers, clients (same passwords) and the stopped state are back.
        try await GatewayFixture.run(directory: directory, port: port) { gw in
            let list = try await gw.admin.call("vgw.list")["providers"]?.arrayValue ?? []
            #expect(list.map { $0["provider"]?.stringValue } == ["a", "b"])
            #expect(list.map { $0["state"]?.stringValue } == ["running", "stopped"])
            let client = try await gw.connect(a)
            #expect(MQTTClient.isRefusal(try await client.subscribe("vgw/b/#")))
            await client.disconnect()
            await #expect(throws: VGWError.self) { try await gw.connect(b) }
        }
        // The dynsec file deleted (or vandalised) while down: rebuilt from the store.
        let dynsec = DataDirectory(directory).dynsecFile
        try FileManager.default.removeItem(atPath: dynsec)
        try await GatewayFixture.run(directory: directory, port: port) { gw in
            let client = try await gw.connect(a)
            #expect(try await client.subscribe("vgw/a/#") == 1)
            #expect(MQTTClient.isRefusal(try await client.subscribe("vgw/b/#")))
            #expect(MQTTClient.isRefusal(try await client.subscribe("#")))
            await client.disconnect()
        }
        try Data(
            #"{"clients":[],"roles":[],"groups":[],"defaultACLAccess":{"publishClientSend":true,"publishClientReceive":true,"subscribe":true,"unsubscribe":true}}"#
                .utf8
        ).write(to: URL(fileURLWithPath: dynsec))
        try await GatewayFixture.run(directory: directory, port: port) { gw in
            let client = try await gw.connect(a)
            #expect(MQTTClient.isRefusal(try await client.subscribe("vgw/b/#")))
            await client.disconnect()
            _ = try await gw.admin.call("vgw.start", ["provider": "b"])
            let bClient = try await gw.connect(b)
            await bClient.disconnect()
        }
    }

    @Test func killedBrokerIsHealedAndClientsReconnect() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("acme")
            let creds = try await gw.addClient("acme", "thermostat")
            let client = try await gw.connect(creds, reconnect: true)
            let inbox = Inbox(client)
            #expect(try await client.subscribe("vgw/acme/#") == 1)
            var events = client.events.makeAsyncIterator()
            let broker = try #require(gw.daemon.broker)
            let pid = try #require(await broker.pid)
            let killedAt = ContinuousClock.now
            kill(pid, SIGKILL)
            // The client sees the loss, then is back (libmosquitto retries after 1 s).
            var lost = false
            var reconnected = false
            while let event = await events.next() {
                if case .disconnected = event { lost = true }
                if case .connected = event, lost {
                    reconnected = true
                    break
                }
            }
            let healed = ContinuousClock.now - killedAt
            #expect(reconnected)
            #expect(healed < .seconds(3), "reconnected after \(healed)")
            #expect(await broker.pid != pid)
            // Subscriptions are restored and the ACLs are in force on the new broker.
            try await client.publish(topic: "vgw/acme/after", string: "ok", qos: .atLeastOnce)
            _ = try await inbox.message(on: "vgw/acme/after")
            #expect(MQTTClient.isRefusal(try await client.subscribe("#")))
            // And the daemon serves again.
            let list = try await gw.admin.call("vgw.list")
            #expect(list["providers"]?.arrayValue?.count == 1)
            await client.disconnect()
        }
    }
}

enum ManagementFixture {
    /// An operator MQTT connection subscribed to every status topic.
    static func statusWatcher(_ gw: GatewayFixture) async throws -> (client: MQTTClient, inbox: Inbox) {
        let credentials = try OperatorCredentials.load(from: DataDirectory(gw.directory).operatorCredentials)
        let client = try await MQTTClient.connected(
            MQTTConfiguration(
                port: Int(gw.port), clientID: "status-watcher", username: credentials.username,
                password: credentials.password, reconnect: false))
        let inbox = Inbox(client)
        #expect(try await client.subscribe("status/#") == 1)
        return (client, inbox)
    }
}
