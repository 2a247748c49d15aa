import Foundation
import Support
import Testing
import VGWServiceKit

@Suite struct ServiceEnvironmentTests {
    static let complete: [String: String] = [
        "VGW_MQTT_HOST": "127.0.0.1", "VGW_MQTT_PORT": "1883", "VGW_MQTT_USERNAME": "bundle-acme-x",
        "VGW_MQTT_PASSWORD": "secret", "VGW_MQTT_CLIENT_ID": "acme-x-1", "VGW_TOPIC_PREFIX": "vgw/acme/",
        "VGW_PROVIDER": "acme", "VGW_BUNDLE": "presence", "VGW_BUNDLE_VERSION": "1.0.0",
        "VGW_STATE_DIR": "/var/lib/vgw/bundles/acme/presence/state",
    ]

    @Test func parsesACompleteEnvironment() throws {
        let environment = try ServiceEnvironment(environment: Self.complete)
        #expect(environment.host == "127.0.0.1")
        #expect(environment.port == 1883)
        #expect(environment.username == "bundle-acme-x")
        #expect(environment.password == "secret")
        #expect(environment.clientID == "acme-x-1")
        #expect(environment.topicPrefix == "vgw/acme/")
        #expect(environment.provider == "acme")
        #expect(environment.bundle == "presence")
        #expect(environment.bundleVersion == "1.0.0")
        #expect(environment.stateDirectory.path == "/var/lib/vgw/bundles/acme/presence/state")
        // The password never shows up in a log line.
        #expect(!"\(environment)".contains("secret"))
    }

    @Test(arguments: ServiceEnvironment.requiredVariables)
    func namesAMissingVariable(_ name: String) {
        var variables = Self.complete
        variables[name] = nil
        #expect {
            try ServiceEnvironment(environment: variables)
        } throws: { error in
            let error = error as? VGWError
            return error?.code == .config && error?.message.contains(name) == true
        }
        // Empty counts as missing.
        variables[name] = ""
        #expect(throws: VGWError.self) { try ServiceEnvironment(environment: variables) }
    }

    @Test func namesEveryMissingVariableAtOnce() {
        #expect {
            try ServiceEnvironment(environment: [:])
        } throws: { error in
            let message = (error as? VGWError)?.message ?? ""
            return ServiceEnvironment.requiredVariables.allSatisfy { message.contains($0) }
        }
    }

    @Test(arguments: [
        ("VGW_MQTT_PORT", "mqtt"), ("VGW_MQTT_PORT", "0"), ("VGW_MQTT_PORT", "70000"),
        ("VGW_TOPIC_PREFIX", "vgw/acme"), ("VGW_TOPIC_PREFIX", "/vgw/acme/"), ("VGW_TOPIC_PREFIX", "vgw/+/"),
        ("VGW_TOPIC_PREFIX", "$SYS/"), ("VGW_STATE_DIR", "relative/state"),
    ])
    func refusesMalformedValues(_ name: String, _ value: String) {
        var variables = Self.complete
        variables[name] = value
        #expect {
            try ServiceEnvironment(environment: variables)
        } throws: { error in
            (error as? VGWError)?.message.contains(name) == true
        }
    }

    @Test func theConfigurationIsTheOneVGWDExpects() throws {
        let environment = try ServiceEnvironment(environment: Self.complete)
        let configuration = VGWService.configuration(for: environment)
        #expect(configuration.protocolVersion == .v5)
        #expect(configuration.clientID == "acme-x-1")
        #expect(configuration.username == "bundle-acme-x" && configuration.password == "secret")
        #expect(configuration.cleanStart == false)
        #expect(configuration.sessionExpiryInterval == 3600)
        #expect(configuration.reconnect)
        #expect(configuration.will?.topic == "vgw/acme/_service/presence/online")
        #expect(configuration.will?.payload == Array("false".utf8))
        #expect(configuration.will?.retain == true)
    }
}
