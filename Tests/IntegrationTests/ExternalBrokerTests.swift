import Broker
import CLI
import Foundation
import Gateway
import MQTT
import Support
import TestSupport
import Testing

/// `vgwd` pointed at an operator's own Mosquitto (dynamic security plugin, admin client
/// made with `mosquitto_ctrl dynsec init`) instead of its embedded broker.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ExternalBrokerTests {
    @Test func reconcilesAndIsolatesOnABrokerItDidNotStart() async throws {
        try await BrokerFixture.withBroker(anonymous: false) { broker in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "vgw-ext-\(UUID().uuidString.prefix(8))"
            ).path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = GatewayConfiguration(dataDirectory: directory)
            configuration.externalBroker = .init(
                host: "127.0.0.1", port: broker.port, adminUsername: BrokerFixture.adminUser,
                adminPassword: BrokerFixture.adminPassword)
            configuration.homeID = "external"

            func withDaemon(_ body: (ManagementClient) async throws -> Void) async throws {
                let daemon = GatewayDaemon(configuration: configuration)
                try await daemon.start()
                do {
                    let credentials = try OperatorCredentials.load(from: DataDirectory(directory).operatorCredentials)
                    #expect(credentials.port == broker.port)
                    let admin = try await ManagementClient.connect(
                        host: "127.0.0.1", port: broker.port, username: credentials.username,
                        password: credentials.password)
                    try await body(admin)
                    await admin.close()
                } catch {
                    await daemon.stop()
                    throw error
                }
                await daemon.stop()
            }

            var aCreds: IssuedCredentials?
            try await withDaemon { admin in
                _ = try await admin.call("vgw.create", ["provider": "a"])
                _ = try await admin.call("vgw.create", ["provider": "b"])
                aCreds = try await admin.call("client.add", ["provider": "a", "name": "s"]).decode(
                    IssuedCredentials.self)
                _ = try await admin.call("vgw.stop", ["provider": "b"])
            }
            let a = try #require(aCreds)
            // A stale group left on the broker (say, by a store restored from an old backup).
            let stale = try await BrokerFixture.runTool(
                "mosquitto_ctrl",
                [
                    "-p", String(broker.port), "-u", BrokerFixture.adminUser, "-P", BrokerFixture.adminPassword,
                    "dynsec", "createGroup", "vgw-stale",
                ])
            #expect(stale == .exited(0))
            try await withDaemon { admin in
                let list = try await admin.call("vgw.list")["providers"]?.arrayValue ?? []
                #expect(list.map { $0["state"]?.stringValue } == ["running", "stopped"])
                let client = try await MQTTClient.connected(
                    MQTTConfiguration(
                        port: Int(broker.port), clientID: a.clientId, username: a.username, password: a.password,
                        reconnect: false))
                #expect(try await client.subscribe("vgw/a/#") == 1)
                #expect(MQTTClient.isRefusal(try await client.subscribe("vgw/b/#")))
                #expect(MQTTClient.isRefusal(try await client.subscribe("#")))
                await client.disconnect()
            }
            // The stale group is gone.
            let listing = broker.dataDirectory + "/groups.txt"
            _ = try await BrokerFixture.runTool(
                "mosquitto_ctrl",
                [
                    "-p", String(broker.port), "-u", BrokerFixture.adminUser, "-P", BrokerFixture.adminPassword,
                    "dynsec", "listGroups",
                ], output: .file(path: listing))
            let groups = try String(contentsOfFile: listing, encoding: .utf8)
            #expect(!groups.contains("vgw-stale"))
            #expect(groups.contains("vgw-a"))
        }
    }
}
