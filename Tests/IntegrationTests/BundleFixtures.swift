import BundleFormat
import CLI
import Crypto
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Testing

/// Bundles built for the tests: a manifest and shell scripts, packed with the real packer.
enum TestBundles {
    /// A bundle whose command is `bin/run.sh` with the given script body.
    static func shell(
        name: String, version: String = "1.0.0", restart: String = "on-failure", resources: String? = nil,
        script: String
    ) throws -> [UInt8] {
        var manifest = #"{"name":"\#(name)","version":"\#(version)","command":"bin/run.sh","restart":"\#(restart)""#
        if let resources { manifest += #","resources":\#(resources)"# }
        manifest += "}"
        var tar = TarWriter()
        tar.addFile("manifest.json", contents: Array(manifest.utf8))
        tar.addDirectory("bin")
        tar.addFile("bin/run.sh", contents: Array(("#!/bin/sh\n" + script).utf8), mode: 0o755)
        tar.addEndMarker()
        return try tar.gzipped()
    }

    /// Writes the broker options of the service's identity for mosquitto_pub/sub (as the
    /// shell example does), then runs `body`.
    static let mqttSetup = """
        set -eu
        umask 077
        mkdir -p "$HOME/.config"
        for tool in mosquitto_pub mosquitto_sub; do
          cat > "$HOME/.config/$tool" <<OPTS
        -h $VGW_MQTT_HOST
        -p $VGW_MQTT_PORT
        -u $VGW_MQTT_USERNAME
        -P $VGW_MQTT_PASSWORD
        -i $VGW_MQTT_CLIENT_ID
        -V mqttv5
        OPTS
        done

        """

    /// A service that says hello once (retained: "<version> <pid>"), then idles until stopped.
    static func talker(name: String = "talker", version: String = "1.0.0") throws -> [UInt8] {
        try shell(
            name: name, version: version,
            script: mqttSetup + """
                mosquitto_pub -q 1 -r -t "${VGW_TOPIC_PREFIX}\(name)/hello" -m "$VGW_BUNDLE_VERSION $$"
                echo "hello from $VGW_BUNDLE as $(id -u)"
                echo "to stderr" >&2
                while :; do sleep 1; done
                """)
    }
}

extension GatewayFixture {
    /// Installs through the operator's endpoint (`mgmt/core/req` with `provider`).
    func install(_ provider: String, _ archive: [UInt8], start: Bool = true) async throws -> JSONValue {
        try await admin.call(
            "bundle.install",
            ["provider": .string(provider), "archive": .string(Base64.encode(archive)), "start": .bool(start)])
    }

    func bundleCall(_ op: String, _ provider: String, _ name: String) async throws -> JSONValue {
        try await admin.call(op, ["provider": .string(provider), "name": .string(name)])
    }

    /// Waits (bounded) until a bundle's retained status says `state`.
    func waitForBundle(_ provider: String, _ name: String, state: String, within limit: Duration = .seconds(15))
        async throws -> JSONValue
    {
        let credentials = try OperatorCredentials.load(from: DataDirectory(directory).operatorCredentials)
        let watcher = try await MQTTClient.connected(
            MQTTConfiguration(
                port: Int(port), clientID: "bundle-watch-\(UUID().uuidString.prefix(6))",
                username: credentials.username, password: credentials.password, reconnect: false))
        defer { Task { await watcher.disconnect() } }
        let inbox = Inbox(watcher)
        _ = try await watcher.subscribe("status/\(provider)/bundles/\(name)")
        let message = try await inbox.next(timeout: limit) {
            (try? JSONCoding.decoder.decode(JSONValue.self, from: Data($0.payload)))?["state"]?.stringValue == state
        }
        return try JSONCoding.decoder.decode(JSONValue.self, from: Data(message.payload))
    }
}
