import Broker
import BundleFormat
import Crypto
import Foundation
import Gateway
import MQTT
import Protocol
import Services
import Support
import TestSupport
import Testing

/// Bundles installed, started, stopped, restarted and removed through the protocol,
/// observed on the broker and in the process table.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct BundleTests {
    static func fastRestarts(_ configuration: inout GatewayConfiguration) {
        configuration.serviceTuning.initialBackoff = .milliseconds(50)
        configuration.serviceTuning.maximumBackoff = .milliseconds(200)
        configuration.serviceTuning.healthyRun = .seconds(2)
        configuration.serviceTuning.crashLoopThreshold = 3
        configuration.serviceTuning.stopGrace = .seconds(2)
    }

    @Test func installRunStopRestartUninstall() async throws {
        try await GatewayFixture.with(configure: Self.fastRestarts) { gw in
            try await gw.createProvider("acme")
            try await gw.createProvider("other")
            let watcher = try await gw.connect(try await gw.addClient("acme", "watch"))
            let seen = Inbox(watcher)
            #expect(try await watcher.subscribe("vgw/acme/#") == 1)
            let otherWatcher = try await gw.connect(try await gw.addClient("other", "watch"))
            let otherSeen = Inbox(otherWatcher)
            #expect(try await otherWatcher.subscribe("vgw/other/#") == 1)

            let installed = try await gw.install("acme", try TestBundles.talker())
            #expect(installed["name"] == "talker" && installed["replaced"] == false)
            let running = try await gw.waitForBundle("acme", "talker", state: "running")
            let pid = try #require(running["pid"]?.intValue)
            #expect(
                try await seen.message(on: "vgw/acme/talker/hello", timeout: .seconds(10)).payloadString
                    == "1.0.0 \(pid)")
            #expect(kill(pid_t(pid), 0) == 0)
            // It runs as the provider's own uid, not as root, and cannot read the store.
            if getuid() == 0 {
                let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
                let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
                #expect(uid?.contains("\t0\t") == false)
            }
            let list = try await gw.admin.call("bundle.list", ["provider": "acme"])
            #expect(list["bundles"]?.arrayValue?.first?["state"] == "running")
            let logs = try await gw.bundleCall("bundle.logs", "acme", "talker")
            #expect(logs["stdout"]?.stringValue?.contains("hello from talker") == true)
            #expect(logs["stderr"]?.stringValue == "to stderr")

            // Stop: the process (and its process group) is gone; start: it says hello again.
            _ = try await gw.bundleCall("bundle.stop", "acme", "talker")
            #expect(try await gw.bundleCall("bundle.isAlive", "acme", "talker")["alive"] == false)
            #expect(await ProcessProbe.waitUntilGone(pid_t(pid), within: .seconds(5)))
            let hellos = await seen.count(on: "vgw/acme/talker/hello")
            _ = try await gw.bundleCall("bundle.start", "acme", "talker")
            try await seen.more(than: hellos, on: "vgw/acme/talker/hello")
            #expect(try await gw.bundleCall("bundle.isAlive", "acme", "talker")["alive"] == true)

            // Replace with a new version: the old process stops, the new one says so.
            let replaced = try await gw.install("acme", try TestBundles.talker(version: "2.0.0"))
            #expect(replaced["replaced"] == true)
            _ = try await seen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/talker/hello" && $0.payloadString.hasPrefix("2.0.0 ")
            }

            // Stopping the VGW stops its services; starting it brings them back.
            _ = try await gw.admin.call("vgw.stop", ["provider": "acme"])
            let stopped = try await gw.bundleCall("bundle.isAlive", "acme", "talker")
            #expect(stopped["alive"] == false)
            _ = try await gw.admin.call("vgw.start", ["provider": "acme"])
            let back = try #require(try await gw.waitForBundle("acme", "talker", state: "running")["pid"]?.intValue)
            let again = try await gw.connect(try await gw.addClient("acme", "watch2"))
            let againSeen = Inbox(again)
            #expect(try await again.subscribe("vgw/acme/#") == 1)
            _ = try await againSeen.next(timeout: .seconds(10)) {
                $0.topic == "vgw/acme/talker/hello" && $0.payloadString == "2.0.0 \(back)"
            }

            // Uninstall: process, files, identity and retained status are gone.
            _ = try await gw.bundleCall("bundle.uninstall", "acme", "talker")
            #expect(try await gw.admin.call("bundle.list", ["provider": "acme"])["bundles"] == [])
            #expect(!FileManager.default.fileExists(atPath: gw.directory + "/bundles/acme/talker"))
            let clients = try await gw.admin.call("client.list", ["provider": "acme"])["clients"]?.arrayValue ?? []
            #expect(!clients.contains { $0["name"]?.stringValue?.hasPrefix("bundle-") == true })
            // Nothing of acme's ever reached the other provider.
            #expect(await otherSeen.received.isEmpty)
            await again.disconnect()
            await otherWatcher.disconnect()
            await watcher.disconnect()
        }
    }

    @Test func servicesComeBackAfterADaemonRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgw-bundle-restart-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try Ports.freePort(host: "127.0.0.1")
        let firstPid = try await GatewayFixture.run(directory: directory, port: port, configure: Self.fastRestarts) {
            gw in
            try await gw.createProvider("acme")
            _ = try await gw.install("acme", try TestBundles.talker(name: "keeper"))
            _ = try await gw.install("acme", try TestBundles.talker(name: "idle"), start: false)
            return try #require(try await gw.waitForBundle("acme", "keeper", state: "running")["pid"]?.intValue)
        }
        // The daemon's stop stopped its services.
        #expect(await ProcessProbe.waitUntilGone(pid_t(firstPid), within: .seconds(5)))
        try await GatewayFixture.run(directory: directory, port: port, configure: Self.fastRestarts) { gw in
            let keeper = try await gw.waitForBundle("acme", "keeper", state: "running")
            #expect(keeper["pid"]?.intValue != firstPid)
            let list = try await gw.admin.call("bundle.list", ["provider": "acme"])["bundles"]?.arrayValue ?? []
            #expect(list.map { $0["name"]?.stringValue } == ["idle", "keeper"])
            #expect(list.map { $0["state"]?.stringValue } == ["stopped", "running"])
        }
    }

    @Test func crashingServiceIsRestartedThenReportedAsCrashLooping() async throws {
        try await GatewayFixture.with(configure: Self.fastRestarts) { gw in
            try await gw.createProvider("acme")
            let archive = try TestBundles.shell(
                name: "crasher", restart: "always", script: "echo crashing >&2\nexit 3\n")
            _ = try await gw.install("acme", archive)
            let status = try await gw.waitForBundle("acme", "crasher", state: "crash-loop")
            #expect(status["lastExit"] == "exit code 3")
            #expect((status["restarts"]?.intValue ?? 0) >= 2)
            let logs = try await gw.bundleCall("bundle.logs", "acme", "crasher")
            #expect(logs["stderr"]?.stringValue?.split(separator: "\n").count == 3)
            // Started again by request, it gets a fresh chance.
            _ = try await gw.bundleCall("bundle.start", "acme", "crasher")
            _ = try await gw.waitForBundle("acme", "crasher", state: "crash-loop")
        }
    }

    @Test func providerCannotTouchOrDiscoverAnotherProvidersBundles() async throws {
        try await GatewayFixture.with(configure: Self.fastRestarts) { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            _ = try await gw.install("a", try TestBundles.talker(name: "secret"))
            let b = try await gw.providerManagement(try await gw.addClient("b", "app"))
            var answers: [Response] = []
            for op in ["bundle.start", "bundle.stop", "bundle.logs", "bundle.uninstall", "bundle.isAlive"] {
                answers.append(try await b.send(op, ["provider": "a", "name": "secret"]))
                // Its own VGW has no such bundle: the same answer as for a's.
                let own = try await b.send(op, ["name": "secret"])
                #expect(own.error?.code == .notFound, "\(op)")
            }
            #expect(answers.allSatisfy { $0.error?.code == .notFound })
            let list = try await b.call("bundle.list")
            #expect(list["bundles"] == [])
            // And a's bundle is untouched.
            #expect(try await gw.bundleCall("bundle.isAlive", "a", "secret")["alive"] == true)
            // b manages its own through its own topic.
            let installed = try await b.call(
                "bundle.install",
                ["archive": .string(Base64.encode(try TestBundles.talker(name: "mine"))), "start": true])
            #expect(installed["provider"] == "b")
            await b.close()
        }
    }

    /// A service is a process of another uid: it cannot read the store, the operator's
    /// credentials, the broker's files, or another provider's bundle, and cannot signal
    /// another provider's service.
    @Test(.enabled(if: getuid() == 0, "per-provider uids need root"))
    func serviceCannotReachTheCoreOrAnotherProvider() async throws {
        try await GatewayFixture.with(configure: Self.fastRestarts) { gw in
            try await gw.createProvider("victim")
            try await gw.createProvider("attacker")
            _ = try await gw.install("victim", try TestBundles.talker(name: "target"))
            let target = try #require(try await gw.waitForBundle("victim", "target", state: "running")["pid"]?.intValue)
            let probe = try TestBundles.shell(
                name: "probe", restart: "never",
                script: """
                    data="$VGW_STATE_DIR/../../../.."
                    for f in state.db operator.json broker/dynamic-security.json broker/mosquitto.conf bundles/victim/target/app/bin/run.sh; do
                      if cat "$data/$f" >/dev/null 2>&1; then echo "READ $f"; else echo "denied $f"; fi
                    done
                    if ls "$data/bundles/victim/target/state" >/dev/null 2>&1; then echo "READ victim state"; else echo "denied victim state"; fi
                    if ls "$data" >/dev/null 2>&1; then echo "LISTED data"; else echo "denied listing"; fi
                    if kill -0 \(target) 2>/dev/null; then echo "SIGNALLED"; else echo "denied signal"; fi
                    echo "can write own state" > "$VGW_STATE_DIR/x" && echo "wrote own state"
                    """)
            _ = try await gw.install("attacker", probe)
            _ = try await gw.waitForBundle("attacker", "probe", state: "exited")
            let output = try await gw.bundleCall("bundle.logs", "attacker", "probe")["stdout"]?.stringValue ?? ""
            #expect(
                !output.contains("READ") && !output.contains("LISTED") && !output.contains("SIGNALLED"), "\(output)")
            #expect(output.components(separatedBy: "denied").count == 9, "\(output)")
            #expect(output.contains("wrote own state"))
        }
    }

    @Test func hostileArchivesAreRefusedAndLeaveNothingBehind() async throws {
        try await GatewayFixture.with(configure: {
            Self.fastRestarts(&$0)
            $0.maxBundleBytes = 256 * 1024
        }) { gw in
            try await gw.createProvider("acme")
            func archive(_ build: (inout TarWriter) -> Void) throws -> [UInt8] {
                var tar = TarWriter()
                build(&tar)
                tar.addEndMarker()
                return try tar.gzipped()
            }
            let manifest = Array(#"{"name":"evil","version":"1","command":"run.sh"}"#.utf8)
            let cases: [(String, [UInt8], VGWError.Code)] = [
                (
                    "dot-dot",
                    try archive {
                        $0.addFile("manifest.json", contents: manifest)
                        $0.addFile("../escape", contents: [1])
                    }, .invalidBundle
                ),
                (
                    "absolute",
                    try archive {
                        $0.addFile("manifest.json", contents: manifest)
                        $0.addFile("/etc/evil", contents: [1])
                    }, .invalidBundle
                ),
                (
                    "symlink",
                    try archive {
                        $0.addFile("manifest.json", contents: manifest)
                        $0.addSymlink("run.sh", target: "/etc/passwd")
                    }, .invalidBundle
                ),
                (
                    "hardlink",
                    try archive {
                        $0.addFile("manifest.json", contents: manifest)
                        $0.addHardLink("run.sh", target: "/etc/passwd")
                    }, .invalidBundle
                ),
                (
                    "device",
                    try archive {
                        $0.addFile("manifest.json", contents: manifest)
                        $0.addCharacterDevice("run.sh")
                    }, .invalidBundle
                ),
                ("no manifest", try archive { $0.addFile("run.sh", contents: [1], mode: 0o755) }, .invalidBundle),
                (
                    "bad manifest", try archive { $0.addFile("manifest.json", contents: Array("{nope".utf8)) },
                    .invalidBundle
                ),
                (
                    "command outside",
                    try archive {
                        $0.addFile(
                            "manifest.json",
                            contents: Array(#"{"name":"evil","version":"1","command":"../../bin/sh"}"#.utf8))
                    }, .invalidBundle
                ),
                (
                    "bomb",
                    try archive {
                        $0.addFile("manifest.json", contents: manifest)
                        $0.addZeroFile("run.sh", size: 50 << 20)
                    }, .tooLarge
                ),
                ("over the limit", Array(repeating: 0x1f, count: 300 * 1024), .tooLarge),
                ("not gzip", Array("hello".utf8), .invalidBundle),
            ]
            for (label, bytes, code) in cases {
                let response = try await gw.admin.send(
                    "bundle.install", ["provider": "acme", "archive": .string(Base64.encode(bytes))])
                #expect(response.error?.code == code, "\(label): \(String(describing: response.error))")
            }
            let bad = try await gw.admin.send("bundle.install", ["provider": "acme", "archive": "not base64!"])
            #expect(bad.error?.code == .invalidArgument)
            // Nothing installed, nothing half-extracted, nothing escaped.
            let left = (try? FileManager.default.contentsOfDirectory(atPath: gw.directory + "/bundles/acme")) ?? []
            #expect(left.isEmpty, "left behind: \(left)")
            #expect(!FileManager.default.fileExists(atPath: gw.directory + "/bundles/escape"))
            #expect(try await gw.admin.call("bundle.list", ["provider": "acme"])["bundles"] == [])
            // The daemon is unaffected.
            _ = try await gw.install("acme", try TestBundles.talker())
        }
    }
}
