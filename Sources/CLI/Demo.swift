import Broker
import BundleFormat
import Crypto
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Synchronization

/// `vgw demo`: a whole gateway in a temporary directory, two providers that cannot see each
/// other, a grant that lets one read the other's presence, its revocation, narrated.
public enum Demo {
    public static func run(out: (String) -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgw-demo-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = GatewayConfiguration(dataDirectory: directory)
        configuration.port = try Ports.freePort(host: "127.0.0.1")
        configuration.portFallback = false
        configuration.homeID = "demo-home"
        // The narration is the output; the daemon's info lines would drown it.
        let threshold = Logger.threshold.withLock { level in
            defer { level = max(level, .warning) }
            return level
        }
        defer { Logger.threshold.withLock { $0 = threshold } }
        let daemon = GatewayDaemon(configuration: configuration)
        out(
            "1. Starting a gateway: vgwd with its own Mosquitto on 127.0.0.1:\(configuration.port), state in \(directory)"
        )
        try await daemon.start()
        do {
            try await tour(directory: directory, port: configuration.port, out: out)
        } catch {
            await daemon.stop()
            throw error
        }
        out("9. Stopping the gateway (its services and broker with it) and removing \(directory).")
        await daemon.stop()
        out("Done. Run it yourself: ./scripts/run.sh, then vgw --help.")
    }

    static func tour(directory: String, port: UInt16, out: (String) -> Void) async throws {
        let credentials = try OperatorCredentials.load(from: DataDirectory(directory).operatorCredentials)
        let admin = try await ManagementClient.connect(
            host: "127.0.0.1", port: port, username: credentials.username, password: credentials.password)
        defer { Task { await admin.close() } }

        out("2. Creating two virtual gateways: homeauto (home automation) and health (health care).")
        _ = try await admin.call("vgw.create", ["provider": "homeauto"])
        _ = try await admin.call("vgw.create", ["provider": "health"])

        out("3. Installing homeauto's presence sensor, a bundle that publishes vgw/homeauto/presence/living-room.")
        _ = try await admin.call(
            "bundle.install",
            ["provider": "homeauto", "archive": .string(Base64.encode(try presenceBundle())), "start": true])

        out("4. Connecting health's monitoring app (client health.monitor).")
        let issued = try await admin.call("client.add", ["provider": "health", "name": "monitor"])
        let monitor = try await MQTTClient.connected(
            MQTTConfiguration(
                port: Int(port), clientID: issued["clientId"]?.stringValue ?? "",
                username: issued["username"]?.stringValue,
                password: issued["password"]?.stringValue, reconnect: true))
        let received = Mutex<[String]>([])
        let reader = Task {
            for await message in monitor.messages { received.withLock { $0.append(message.payloadString) } }
        }
        defer { reader.cancel() }
        let refused = try await monitor.subscribe("vgw/homeauto/presence/#")
        out(
            "   health subscribes to vgw/homeauto/presence/#: \(MQTTClient.isRefusal(refused) ? "REFUSED by the broker (reason 0x\(String(refused, radix: 16)))" : "granted?!")"
        )
        try await Task.sleep(for: .seconds(2))
        out(
            "   messages health received from homeauto in 2 s: \(received.withLock { $0.count }). They cannot see each other."
        )

        out("5. The operator grants health read access to homeauto's presence topics:")
        out("   vgw grant create homeauto health 'presence/#' --access read")
        let grant = try await admin.call(
            "grant.create", ["owner": "homeauto", "grantee": "health", "filter": "presence/#", "access": "read"])
        try await waitConnected(monitor)
        let granted = try await monitor.subscribe("vgw/homeauto/presence/#")
        out("   health subscribes again: \(MQTTClient.isRefusal(granted) ? "refused?!" : "granted")")
        let deadline = ContinuousClock.now + .seconds(5)
        while received.withLock({ $0.isEmpty }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        out(
            "6. Cooperation: health now receives homeauto's presence: \(received.withLock { $0.first ?? "(nothing yet)" })"
        )

        out("7. Revoking the grant (vgw grant revoke \(grant["id"]?.intValue ?? 0)).")
        _ = try await admin.call("grant.revoke", ["id": grant["id"] ?? .null])
        try await waitConnected(monitor)
        let before = received.withLock { $0.count }
        try await Task.sleep(for: .seconds(2))
        let after = received.withLock { $0.count } - before
        out("8. Messages health received in the 2 s after the revoke: \(after). The cooperation has stopped.")
        await monitor.disconnect()
    }

    /// The broker disconnects a role's clients when its ACLs change; the app reconnects.
    static func waitConnected(_ client: MQTTClient) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        try await Task.sleep(for: .milliseconds(200))
        while !client.isConnected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func presenceBundle() throws -> [UInt8] {
        var tar = TarWriter()
        tar.addFile(
            "manifest.json",
            contents: Array(#"{"name":"presence","version":"1.0.0","command":"run.sh","restart":"always"}"#.utf8))
        tar.addFile(
            "run.sh",
            contents: Array(
                """
                #!/bin/sh
                set -eu
                mkdir -p "$HOME/.config"
                printf -- '-h %s\\n-p %s\\n-u %s\\n-P %s\\n-i %s\\n' "$VGW_MQTT_HOST" "$VGW_MQTT_PORT" \\
                  "$VGW_MQTT_USERNAME" "$VGW_MQTT_PASSWORD" "$VGW_MQTT_CLIENT_ID" > "$HOME/.config/mosquitto_pub"
                while :; do
                  mosquitto_pub -t "${VGW_TOPIC_PREFIX}presence/living-room" -m "someone is home at $(date +%T)"
                  sleep 0.5
                done
                """.utf8), mode: 0o755)
        tar.addEndMarker()
        return try tar.gzipped()
    }
}
