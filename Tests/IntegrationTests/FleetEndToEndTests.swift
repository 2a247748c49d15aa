import Broker
import BundleFormat
import CLI
import Crypto
import Fleet
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Synchronization
import TestSupport
import Testing

/// A cloud broker and three homes (each a real broker and vgwd) on loopback: signed
/// requests through the bridges, refusals with distinct codes, a home offline and back.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct FleetEndToEndTests {
    static let homes = ["h1", "h2", "h3"]

    /// The cloud ACLs of docs/fleet.md: each home its own subtree, each provider its own endpoint.
    static var cloudUsers: [BrokerFixture.User] {
        homes.map { home in
            BrokerFixture.User(
                "home.\(home)", password: "pw-\(home)",
                acls: ACL.read("fleet/\(home)/mgmt/+/req") + ACL.read("fleet/all/mgmt/+/req")
                    + [
                        ACL(.publishClientSend, "fleet/\(home)/mgmt/+/res/#"),
                        ACL(.publishClientSend, "fleet/\(home)/status/#"),
                        ACL(.publishClientSend, "fleet/\(home)/vgw/+/export/#"),
                    ])
        }
            + ["acme", "evil"].map { provider in
                BrokerFixture.User(
                    "provider.\(provider)", password: "pw-\(provider)",
                    acls: [ACL(.publishClientSend, "fleet/+/mgmt/\(provider)/req")]
                        + ACL.read("fleet/+/mgmt/\(provider)/res/#") + ACL.read("fleet/+/status/\(provider)/#"))
            } + [
                // A cloud with no ACLs to speak of: the homes' signature checks must hold alone.
                BrokerFixture.User(
                    "wide.open", password: "pw-open", acls: ACL.readWrite("fleet/#"))
            ]
    }

    /// Signs and sends one request to `home` (or all) and gathers the answers by home.
    final class Sender: Sendable {
        let client: MQTTClient
        let inbox: Inbox
        let replyTo: String

        init(port: UInt16, username: String, password: String) async throws {
            client = try await MQTTClient.connected(
                MQTTConfiguration(
                    port: Int(port), clientID: "\(username)-\(UUID().uuidString.prefix(6))", username: username,
                    password: password, protocolVersion: .v311, reconnect: false))
            inbox = Inbox(client)
            replyTo = "t" + String(UUID().uuidString.prefix(8))
        }

        func listen(provider: String) async throws -> UInt8 {
            try await client.subscribe(FleetTopics.responses(provider: provider, replyTo: replyTo), qos: .atMostOnce)
        }

        func request(_ op: String, _ args: [String: JSONValue] = [:]) throws -> (id: String, bytes: [UInt8]) {
            let id = UUID().uuidString
            return (id, try Request(id: id, op: op, args: args, replyTo: replyTo).encoded())
        }

        func send(_ envelope: SignedRequest, home: String, endpoint: String) async throws {
            try await client.publish(
                topic: FleetTopics.request(home: home, provider: endpoint),
                payload: Array(try JSONCoding.encoder.encode(envelope)), qos: .atMostOnce)
        }

        /// The responses with `id`, by home, once `homes` all answered (bounded).
        func answers(id: String, from homes: [String], timeout: Duration = .seconds(15)) async throws -> [String:
            Response]
        {
            var result: [String: Response] = [:]
            for home in homes {
                let message = try await inbox.next(timeout: timeout) { message in
                    FleetTopics.home(of: message.topic) == home && (try? Response.decode(message.payload))?.id == id
                }
                result[home] = try Response.decode(message.payload)
            }
            return result
        }

        /// Signs a request for `home` (or `all`) with `keys`, sends it to `endpoint` and returns
        /// the answers of `homes`.
        func call(
            _ op: String, _ args: [String: JSONValue] = [:], home: String, keys: Ed25519.KeyPair,
            endpoint: String = "acme", from homes: [String]
        ) async throws -> [String: Response] {
            let (id, bytes) = try request(op, args)
            try await send(
                try RequestSigner.sign(bytes, home: home, provider: endpoint, keys: keys), home: home,
                endpoint: endpoint)
            return try await answers(id: id, from: homes)
        }
    }

    /// Runs the three homes, each bridged to the cloud, with provider acme and its key.
    static func withFleet(
        cloudPort: UInt16, keys: Ed25519.KeyPair, _ body: ([GatewayFixture]) async throws -> Void
    ) async throws {
        func nest(_ index: Int, _ fixtures: [GatewayFixture]) async throws {
            guard index < homes.count else { return try await body(fixtures) }
            try await GatewayFixture.with(configure: { configuration in
                configuration.homeID = homes[index]
                configuration.cloud = CloudBridge(
                    host: "127.0.0.1", port: cloudPort, homeID: homes[index], username: "home.\(homes[index])",
                    password: "pw-\(homes[index])")
                BundleTests.fastRestarts(&configuration)
            }) { home in
                try await home.createProvider("acme")
                _ = try await home.admin.call(
                    "security.setCredential", ["provider": "acme", "publicKey": .string(Base64.encode(keys.publicKey))])
                _ = try await home.install("acme", try TestBundles.talker(name: "meter"), start: false)
                try await nest(index + 1, fixtures + [home])
            }
        }
        try await nest(0, [])
    }

    /// Waits until every home answers a (signed) request: the bridges are up.
    static func waitForBridges(_ sender: Sender, keys: Ed25519.KeyPair, within limit: Duration = .seconds(30))
        async throws
    {
        let deadline = ContinuousClock.now + limit
        while true {
            let (id, bytes) = try sender.request("vgw.isAlive")
            try await sender.send(
                try RequestSigner.sign(bytes, home: "all", provider: "acme", keys: keys), home: "all", endpoint: "acme")
            if (try? await sender.answers(id: id, from: homes, timeout: .seconds(2))) != nil { return }
            guard ContinuousClock.now < deadline else { throw VGWError(.timeout, "the bridges did not come up") }
        }
    }

    @Test func providerManagesAllHomesAndNobodyElseCan() async throws {
        let keys = try Ed25519.KeyPair.generate()
        try await BrokerFixture.withBroker(anonymous: false, users: Self.cloudUsers) { cloud in
            try await Self.withFleet(cloudPort: cloud.port, keys: keys) { homes in
                let acme = try await Sender(port: cloud.port, username: "provider.acme", password: "pw-acme")
                #expect(try await acme.listen(provider: "acme") == 0)
                try await Self.waitForBridges(acme, keys: keys)

                // One signed request to all homes: list, then start the bundle everywhere.
                let started = ContinuousClock.now
                let lists = try await acme.call("bundle.list", home: "all", keys: keys, from: Self.homes)
                print("fleet bundle.list round trip over 3 homes: \(ContinuousClock.now - started)")
                #expect(lists.values.allSatisfy { $0.ok && $0.result?["bundles"]?.arrayValue?.count == 1 })
                #expect(Set(lists.values.compactMap(\.home)) == Set(Self.homes))
                let starts = try await acme.call(
                    "bundle.start", ["name": "meter"], home: "all", keys: keys, from: Self.homes)
                #expect(starts.values.allSatisfy { $0.ok })
                for home in homes { _ = try await home.waitForBundle("acme", "meter", state: "running") }

                // Another provider: the cloud broker refuses its publish to acme's endpoint.
                let evil = try await Sender(port: cloud.port, username: "provider.evil", password: "pw-evil")
                #expect(MQTTClient.isRefusal(try await evil.client.subscribe("fleet/+/mgmt/acme/res/#")))
                let (_, stop) = try evil.request("bundle.stop", ["name": "meter"])
                let evilKeys = try Ed25519.KeyPair.generate()
                try await evil.send(
                    try RequestSigner.sign(stop, home: "all", provider: "acme", keys: evilKeys), home: "all",
                    endpoint: "acme")
                // With a wide-open cloud, the homes' signature check refuses it, with its own code.
                let open = try await Sender(port: cloud.port, username: "wide.open", password: "pw-open")
                _ = try await open.client.subscribe("fleet/+/mgmt/acme/res/\(open.replyTo)", qos: .atMostOnce)
                let refusals = try await open.call(
                    "bundle.stop", ["name": "meter"], home: "all", keys: evilKeys, from: Self.homes)
                #expect(refusals.values.allSatisfy { $0.error?.code == RequestAuthenticator.badSignature })
                for home in homes {
                    #expect(try await home.bundleCall("bundle.isAlive", "acme", "meter")["alive"] == true)
                }
                await evil.client.disconnect()
                await open.client.disconnect()
                // Bundles through the cloud must be signed by the provider's key.
                let archive = try TestBundles.talker(name: "remote")
                let archiveText = JSONValue.string(Base64.encode(archive))
                let unsigned = try await acme.call(
                    "bundle.install", ["archive": archiveText], home: "h1", keys: keys, from: ["h1"])
                #expect(unsigned["h1"]?.error?.code == RequestAuthenticator.unauthenticated)
                let badSignature = try await acme.call(
                    "bundle.install",
                    ["archive": archiveText, "signature": .string(Base64.encode(try evilKeys.sign(archive)))],
                    home: "h1", keys: keys, from: ["h1"])
                #expect(badSignature["h1"]?.error?.code == RequestAuthenticator.badSignature)
                let installs = try await acme.call(
                    "bundle.install",
                    [
                        "archive": archiveText, "signature": .string(Base64.encode(try keys.sign(archive))),
                        "start": true,
                    ],
                    home: "all", keys: keys, from: Self.homes)
                #expect(installs.values.allSatisfy { $0.ok && $0.result?["name"] == "remote" })
                await acme.client.disconnect()
            }
        }
    }

    @Test func forgedWrongHomeReplayedAndExpiredAreRefusedWithDistinctCodes() async throws {
        let keys = try Ed25519.KeyPair.generate()
        try await BrokerFixture.withBroker(anonymous: false, users: Self.cloudUsers) { cloud in
            try await Self.withFleet(cloudPort: cloud.port, keys: keys) { _ in
                let open = try await Sender(port: cloud.port, username: "wide.open", password: "pw-open")
                _ = try await open.client.subscribe("fleet/+/mgmt/+/res/\(open.replyTo)", qos: .atMostOnce)
                try await Self.waitForBridges(open, keys: keys)
                func refusal(_ envelope: SignedRequest, home: String = "h1", endpoint: String = "acme", id: String)
                    async throws -> VGWError.Code?
                {
                    try await open.send(envelope, home: home, endpoint: endpoint)
                    return try await open.answers(id: id, from: ["h1"])["h1"]?.error?.code
                }
                let (id1, r1) = try open.request("vgw.isAlive")
                #expect(
                    try await refusal(
                        try RequestSigner.sign(r1, home: "h1", provider: "acme", keys: try .generate()), id: id1)
                        == RequestAuthenticator.badSignature)
                let (id2, r2) = try open.request("vgw.isAlive")
                #expect(
                    try await refusal(try RequestSigner.sign(r2, home: "h2", provider: "acme", keys: keys), id: id2)
                        == RequestAuthenticator.wrongHome)
                let (id3, r3) = try open.request("vgw.isAlive")
                let good = try RequestSigner.sign(r3, home: "h1", provider: "acme", keys: keys)
                try await open.send(good, home: "h1", endpoint: "acme")
                #expect(try await open.answers(id: id3, from: ["h1"])["h1"]?.ok == true)
                let h1Answers = FleetTopics.response(home: "h1", provider: "acme", replyTo: open.replyTo)
                let before = await open.inbox.count(on: h1Answers)
                try await open.send(good, home: "h1", endpoint: "acme")
                // Two answers to the duplicate: the refusal, and the original's answer sent again
                // (it ran once; a retry after a lost answer is how QoS 0 delivery stays reliable).
                try await open.inbox.more(than: before + 1, on: h1Answers)
                let latest = await open.inbox.received.filter { $0.topic == h1Answers }.suffix(2)
                    .compactMap { try? Response.decode($0.payload) }
                #expect(latest.contains { $0.error?.code == RequestAuthenticator.replayed })
                #expect(latest.contains { $0.id == id3 && $0.ok })
                let (id4, r4) = try open.request("vgw.isAlive")
                let stale = try RequestSigner.sign(
                    r4, home: "h1", provider: "acme", keys: keys, validFor: 60,
                    now: Int64(Date().timeIntervalSince1970) - 3600)
                #expect(try await refusal(stale, id: id4) == RequestAuthenticator.expired)
                let (id5, r5) = try open.request("vgw.isAlive")
                #expect(
                    try await refusal(
                        try RequestSigner.sign(r5, home: "h1", provider: "acme", keys: keys), endpoint: "core", id: id5)
                        == RequestAuthenticator.wrongProvider)
                await open.client.disconnect()
            }
        }
    }

    /// The provider's fleet client (what `vgw fleet run` uses) against real homes.
    @Test func fleetClientRunsACommandOnEveryHome() async throws {
        let keys = try Ed25519.KeyPair.generate()
        try await BrokerFixture.withBroker(anonymous: false, users: Self.cloudUsers) { cloud in
            try await Self.withFleet(cloudPort: cloud.port, keys: keys) { _ in
                let probe = try await Sender(port: cloud.port, username: "provider.acme", password: "pw-acme")
                _ = try await probe.listen(provider: "acme")
                try await Self.waitForBridges(probe, keys: keys)
                await probe.client.disconnect()
                let fleet = try await FleetClient.connect(
                    host: "127.0.0.1", port: cloud.port, username: "provider.acme", password: "pw-acme",
                    provider: "acme", keys: keys)
                let progress = Mutex<[Int]>([])
                let results = await fleet.run(
                    op: "bundle.list", target: .all(expecting: Self.homes), timeout: .seconds(10)
                ) { update in progress.withLock { $0.append(update.answered) } }
                #expect(results.map(\.home).sorted() == Self.homes)
                #expect(results.allSatisfy { $0.ok })
                #expect(progress.withLock { $0.last } == 3)
                let one = await fleet.run(
                    op: "bundle.start", args: ["name": "meter"], target: FleetTarget(homes: ["h2"]))
                #expect(one.count == 1 && one[0].ok)
                await fleet.close()
            }
        }
    }

    /// What a provider types: `vgw keygen`, `vgw bundle sign`, `vgw fleet ... run`.
    @Test func theFleetCommandLine() async throws {
        try await withTemporaryDirectory { dir in
            let lines = OutputCapture()
            func vgw(_ args: [String]) async -> Int32 {
                await VGWCommand.run(args, out: { lines.add($0) }, err: { lines.add("ERR " + $0) })
            }
            #expect(await vgw(["keygen", "--out", dir.file("acme")]) == 0)
            let secret = try String(contentsOfFile: dir.file("acme.key"), encoding: .utf8)
            let keys = try Ed25519.KeyPair(
                secretKey: try #require(Base64.decode(secret.trimmingCharacters(in: .whitespacesAndNewlines))))
            let archive = dir.file("meter2.tar.gz")
            try Data(try TestBundles.talker(name: "meter2")).write(to: URL(fileURLWithPath: archive))
            #expect(await vgw(["bundle", "sign", "--key", dir.file("acme.key"), archive]) == 0)
            try Data("pw-acme".utf8).write(to: URL(fileURLWithPath: dir.file("cloud.pass")))
            try await BrokerFixture.withBroker(anonymous: false, users: Self.cloudUsers) { cloud in
                try await Self.withFleet(cloudPort: cloud.port, keys: keys) { _ in
                    let probe = try await Sender(port: cloud.port, username: "provider.acme", password: "pw-acme")
                    _ = try await probe.listen(provider: "acme")
                    try await Self.waitForBridges(probe, keys: keys)
                    await probe.client.disconnect()
                    let fleet = [
                        "fleet", "--cloud", "mqtt://127.0.0.1:\(cloud.port)", "--provider", "acme", "--key",
                        dir.file("acme.key"), "--password-file", dir.file("cloud.pass"), "run", "--homes", "all",
                        "--expect", Self.homes.joined(separator: ","), "--timeout", "10",
                    ]
                    #expect(await vgw(fleet + ["--archive", archive, "--arg", "start=true", "bundle.install"]) == 0)
                    #expect(await vgw(fleet + ["--json", "bundle.list"]) == 0)
                    let json = lines.all.last { $0.hasPrefix("[") || $0.hasPrefix("{") } ?? ""
                    #expect(json.contains("meter2") && Self.homes.allSatisfy { json.contains("\"\($0)\"") })
                    // A home that does not exist never answers: a timeout, and a failing exit status.
                    let missing = [
                        "fleet", "--cloud", "mqtt://127.0.0.1:\(cloud.port)", "--provider", "acme", "--key",
                        dir.file("acme.key"), "--password-file", dir.file("cloud.pass"), "run", "--homes", "h1,h9",
                        "--timeout", "2", "vgw.isAlive",
                    ]
                    #expect(await vgw(missing) == 1)
                }
            }
        }
    }

    @Test func aHomeOffTheCloudKeepsRunningAndAnswersWhenBack() async throws {
        let keys = try Ed25519.KeyPair.generate()
        try await BrokerFixture.withBroker(anonymous: false, users: Self.cloudUsers) { cloud in
            try await Self.withFleet(cloudPort: cloud.port, keys: keys) { homes in
                _ = try await homes[0].bundleCall("bundle.start", "acme", "meter")
                let pid = try #require(try await homes[0].waitForBundle("acme", "meter", state: "running")["pid"])
                await cloud.stop()
                // The home works on locally: its service runs, its operator is served.
                #expect(try await homes[0].bundleCall("bundle.isAlive", "acme", "meter")["alive"] == true)
                #expect(try await homes[0].waitForBundle("acme", "meter", state: "running")["pid"] == pid)
                try await cloud.start()
                let acme = try await Sender(port: cloud.port, username: "provider.acme", password: "pw-acme")
                _ = try await acme.listen(provider: "acme")
                try await Self.waitForBridges(acme, keys: keys, within: .seconds(40))
                await acme.client.disconnect()
            }
        }
    }
}
