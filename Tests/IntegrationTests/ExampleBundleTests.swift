import BundleFormat
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Testing

/// The example bundles of `examples/`, packed with the real packer, installed into a real
/// gateway and observed on the broker by another client of the same provider.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct ExampleBundleTests {
    /// The repository's `examples/` directory.
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")

    /// Whether `python3`, found with the PATH vgwd gives services, can import paho-mqtt.
    static let pythonPahoAvailable: Bool = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import paho.mqtt.client"]
        process.environment = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    /// The debug build of the Swift example, beside the test binary (`swift build --build-tests`
    /// builds it). It links the Swift runtime from the toolchain (RUNPATH /opt/swift/...), which
    /// is world-readable, so the service's uid can load it on this machine.
    static let sensorBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("example-sensor")

    static var sensorBinaryAvailable: Bool { FileManager.default.isExecutableFile(atPath: sensorBinary.path) }

    /// Installs `archive` as provider `acme`, with a watcher subscribed to `vgw/acme/#`
    /// before the service starts, then runs `body`.
    static func withInstalled(
        _ archive: [UInt8], name: String, _ body: (GatewayFixture, MQTTClient, Inbox) async throws -> Void
    ) async throws {
        try await GatewayFixture.with(configure: BundleTests.fastRestarts) { gw in
            try await gw.createProvider("acme")
            let watcher = try await gw.connect(try await gw.addClient("acme", "watch"))
            let seen = Inbox(watcher)
            #expect(try await watcher.subscribe("vgw/acme/#") == 1)
            let installed = try await gw.install("acme", archive)
            #expect(installed["name"]?.stringValue == name)
            _ = try await gw.waitForBundle("acme", name, state: "running")
            do {
                try await body(gw, watcher, seen)
            } catch {
                let logs = try? await gw.bundleCall("bundle.logs", "acme", name)
                Issue.record("logs of \(name): \(String(describing: logs))")
                await watcher.disconnect()
                throw error
            }
            await watcher.disconnect()
        }
    }

    @Test func shellThermometerPublishesReadings() async throws {
        let archive = try BundleArchive.pack(directory: Self.examples.appendingPathComponent("shell-thermometer").path)
        try await Self.withInstalled(archive, name: "thermometer") { gw, _, seen in
            let reading = try await seen.message(on: "vgw/acme/thermometer/state/temperature", timeout: .seconds(15))
            #expect(Double(reading.payloadString) != nil, "\(reading.payloadString)")
        }
    }

    @Test(
        .enabled(
            if: pythonPahoAvailable,
            "python3 on the services' PATH cannot import paho.mqtt: install python3-paho-mqtt (scripts/deps.sh)"))
    func pythonHeartRatePublishesReadings() async throws {
        let archive = try BundleArchive.pack(directory: Self.examples.appendingPathComponent("python-presence").path)
        try await Self.withInstalled(archive, name: "heart-rate") { gw, _, seen in
            let reading = try await seen.message(on: "vgw/acme/health/heart-rate", timeout: .seconds(15))
            let json = try JSONCoding.decoder.decode(JSONValue.self, from: Data(reading.payload))
            #expect(json["bpm"]?.intValue != nil && json["at"]?.stringValue != nil, "\(reading.payloadString)")
            _ = try await seen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/_service/heart-rate/online" && $0.payloadString == "true"
            }
            // A stop by request is clean: the service clears the flag itself before it disconnects.
            // (vgwd's status after a stop does not carry the exit code, so that is not checked.)
            _ = try await gw.bundleCall("bundle.stop", "acme", "heart-rate")
            _ = try await seen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/_service/heart-rate/online" && $0.payloadString == "false"
            }
            _ = try await gw.waitForBundle("acme", "heart-rate", state: "stopped")
            let logs = try await gw.bundleCall("bundle.logs", "acme", "heart-rate")
            #expect(logs["stdout"]?.stringValue?.hasSuffix("stopped") == true, "\(logs)")
        }
    }

    @Test(
        .enabled(
            if: sensorBinaryAvailable,
            "the debug build of example-sensor is not beside the test binary: build with --build-tests"))
    func swiftSensorPublishesPresenceAndAnswersPings() async throws {
        let archive = try withTemporaryStage { stage in
            try FileManager.default.copyItem(
                at: Self.examples.appendingPathComponent("swift-sensor/manifest.json"),
                to: stage.appendingPathComponent("manifest.json"))
            try FileManager.default.createDirectory(
                at: stage.appendingPathComponent("bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: Self.sensorBinary, to: stage.appendingPathComponent("bin/example-sensor"))
            return try BundleArchive.pack(directory: stage.path)
        }
        try await Self.withInstalled(archive, name: "presence") { gw, watcher, seen in
            let reading = try await seen.message(on: "vgw/acme/presence/living-room", timeout: .seconds(15))
            let json = try JSONCoding.decoder.decode(JSONValue.self, from: Data(reading.payload))
            #expect(json["present"]?.boolValue != nil, "\(reading.payloadString)")
            let at = try #require(json["at"]?.stringValue)
            #expect(ISO8601DateFormatter().date(from: at) != nil, "\(at)")
            _ = try await seen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/_service/presence/online" && $0.payloadString == "true"
            }

            // It subscribes before its first reading, so the ping cannot go unheard.
            let token = "ping-\(UUID().uuidString.prefix(8))"
            _ = try await watcher.publish(topic: "vgw/acme/cmd/ping", string: token)
            _ = try await seen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/state/pong" && $0.payloadString == token
            }

            // SIGTERM: the SDK clears the flag and disconnects cleanly (no will), then exits.
            // (vgwd's status after a stop does not carry the exit code, so that is not checked.)
            _ = try await gw.bundleCall("bundle.stop", "acme", "presence")
            _ = try await seen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/_service/presence/online" && $0.payloadString == "false"
            }
            _ = try await gw.waitForBundle("acme", "presence", state: "stopped")
            let logs = try await gw.bundleCall("bundle.logs", "acme", "presence")
            #expect(logs["stdout"]?.stringValue?.contains("published {\"present\"") == true)
            let stderr = logs["stderr"]?.stringValue ?? ""
            #expect(stderr.contains("stopping signal=SIGTERM") && !stderr.contains("level=error"), "\(stderr)")
        }
    }

    /// Runs `body` with a fresh directory, removed afterwards.
    private func withTemporaryStage<T>(_ body: (URL) throws -> T) throws -> T {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgw-stage-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: stage, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: stage) }
        return try body(stage)
    }
}
