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
            // A stale role and client left on the broker (say, by a store restored from an old
            // backup), and a client of someone else's that must survive.
            let ctrl = [
                "-p", String(broker.port), "-u", BrokerFixture.adminUser, "-P", BrokerFixture.adminPassword, "dynsec",
            ]
            #expect(
                try await BrokerFixture.runTool("mosquitto_ctrl", ctrl + ["createRole", "vgw-stale"]) == .exited(0))
            for client in ["stale.x", "someone.else"] {
                #expect(
                    try await BrokerFixture.runTool("mosquitto_ctrl", ctrl + ["createClient", client, "-p", "pw"])
                        == .exited(0))
            }
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
            // The stale role and its provider's client are gone; the stranger's client stays.
            let listing = broker.dataDirectory + "/listing.txt"
            for command in ["listRoles", "listClients"] {
                _ = try await BrokerFixture.runTool("mosquitto_ctrl", ctrl + [command], output: .file(path: listing))
            }
            let text = try String(contentsOfFile: listing, encoding: .utf8)
            #expect(!text.contains("vgw-stale") && !text.contains("stale.x"))
            #expect(text.contains("vgw-a") && text.contains("someone.else") && text.contains("a.s"))
        }
    }
}
