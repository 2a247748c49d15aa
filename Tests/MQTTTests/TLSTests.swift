import Broker
import Foundation
import MQTT
import Support
import TestSupport
import Testing

/// `mqtts://`: the client trusts the broker only with the right CA.
@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
struct TLSTests {
    /// A CA and a broker certificate for 127.0.0.1, made with openssl.
    static func certificates(in dir: TemporaryDirectory, name: String) async throws -> (
        ca: String, cert: String, key: String
    ) {
        let ca = dir.file("\(name)-ca.pem")
        let caKey = dir.file("\(name)-ca.key")
        let key = dir.file("\(name)-server.key")
        let csr = dir.file("\(name)-server.csr")
        let cert = dir.file("\(name)-server.pem")
        let ext = dir.file("\(name)-san.ext")
        try Data("subjectAltName=IP:127.0.0.1\n".utf8).write(to: URL(fileURLWithPath: ext))
        for arguments in [
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", ca, "-days", "2", "-subj",
                "/CN=test-ca-\(name)",
            ],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "2",
                "-extfile", ext,
            ],
        ] {
            let status = try await BrokerFixture.runTool("openssl", arguments)
            try #require(status == .exited(0), "openssl \(arguments.joined(separator: " "))")
        }
        // mosquitto reads them as root here, or as its own user: world-readable test files.
        for file in [key, cert, ca] { chmod(file, 0o644) }
        return (ca, cert, key)
    }

    @Test func connectsWithTheRightCAOnly() async throws {
        try await withTemporaryDirectory { dir in
            chmod(dir.path, 0o755)
            let good = try await Self.certificates(in: dir, name: "good")
            let other = try await Self.certificates(in: dir, name: "other")
            try await BrokerFixture.withBroker(tls: .init(certFile: good.cert, keyFile: good.key)) { broker in
                var configuration = MQTTConfiguration(
                    port: Int(broker.port), clientID: "tls-client", reconnect: false, operationTimeout: .seconds(5))
                configuration.tls = MQTTTLS(caFile: good.ca)
                let client = try await MQTTClient.connected(configuration)
                let inbox = Inbox(client.messages)
                #expect(try await client.subscribe("secure/#") == 1)
                try await client.publish(topic: "secure/x", string: "over tls", qos: .atLeastOnce)
                #expect(try await inbox.next().payloadString == "over tls")
                await client.disconnect()

                configuration.tls = MQTTTLS(caFile: other.ca)
                configuration.clientID = "wrong-ca"
                await #expect(throws: VGWError.self) { try await MQTTClient.connected(configuration) }
                configuration.tls = nil
                configuration.clientID = "plain"
                await #expect(throws: VGWError.self) { try await MQTTClient.connected(configuration) }
            }
        }
    }
}
