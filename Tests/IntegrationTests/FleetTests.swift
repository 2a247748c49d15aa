import Broker
import CLI
import Crypto
import Fleet
import Foundation
import Gateway
import MQTT
import Protocol
import Store
import Support
import Synchronization
import TestSupport
import Testing

/// The cloud side of remote management against a real Mosquitto with dynamic security:
/// the ACLs of `vgw cloud add-home` / `add-provider`, and `FleetClient` against simulated
/// homes that verify signatures with the real `RequestAuthenticator`.
@Suite struct FleetTests {
    /// A cloud broker with provider acme and other, and homes h1, h2, h3; the passwords by username.
    func withCloud(_ body: (BrokerFixture, [String: String]) async throws -> Void) async throws {
        try await BrokerFixture.withBroker(anonymous: false) { broker in
            let admin = try await CloudAdmin.connect(
                host: broker.host, port: broker.port, username: BrokerFixture.adminUser,
                password: BrokerFixture.adminPassword)
            var passwords: [String: String] = [:]
            do {
                for provider in ["acme", "other"] {
                    passwords[CloudACLs.providerUsername(provider)] = try await admin.addProvider(provider)
                }
                for home in ["h1", "h2", "h3"] {
                    passwords[CloudACLs.homeUsername(home)] = try await admin.addHome(home)
                }
                await admin.close()
            } catch {
                await admin.close()
                throw error
            }
            try await body(broker, passwords)
        }
    }

    func connect(_ broker: BrokerFixture, _ username: String, _ passwords: [String: String], clientID: String? = nil)
        async throws -> MQTTClient
    {
        try await MQTTClient.connected(
            MQTTConfiguration(
                host: broker.host, port: Int(broker.port),
                clientID: clientID ?? "\(username)-\(try SecureRandom.token(bytes: 4))", username: username,
                password: passwords[username], reconnect: false, operationTimeout: .seconds(5)))
    }

    // MARK: - Cloud ACLs

    @Test func providersReachHomesOnlyUnderTheirOwnID() async throws {
        try await withCloud { broker, passwords in
            let home = try await connect(broker, "home.h1", passwords, clientID: "bridge-h1")
            let acme = try await connect(broker, "provider.acme", passwords)
            let codes = try await home.subscribe(["fleet/h1/mgmt/+/req", "fleet/all/mgmt/+/req"])
            #expect(codes.allSatisfy { !MQTTClient.isRefusal($0) })

            // Refused first, then two allowed: the home sees exactly the allowed ones, in order.
            let refused = try await acme.publish(topic: "fleet/h1/mgmt/other/req", string: "forged")
            #expect(!MQTTClient.isSuccess(refused))
            #expect(MQTTClient.isSuccess(try await acme.publish(topic: "fleet/h1/mgmt/acme/req", string: "one")))
            #expect(MQTTClient.isSuccess(try await acme.publish(topic: "fleet/all/mgmt/acme/req", string: "all")))
            let seen = Mutex<[String]>([])
            _ = await firstMatch(home.messages, within: .seconds(5)) { message in
                seen.withLock { $0.append("\(message.topic)=\(message.payloadString)") }
                return message.payloadString == "all"
            }
            #expect(seen.withLock { $0 } == ["fleet/h1/mgmt/acme/req=one", "fleet/all/mgmt/acme/req=all"])
            await acme.disconnect()
            await home.disconnect()
        }
    }

    @Test func nobodyReadsWhatIsNotTheirs() async throws {
        try await withCloud { broker, passwords in
            let acme = try await connect(broker, "provider.acme", passwords)
            let h2 = try await connect(broker, "home.h2", passwords, clientID: "bridge-h2")
            let h1 = try await connect(broker, "home.h1", passwords, clientID: "bridge-h1")
            // acme reads its own responses, not other's.
            #expect(!MQTTClient.isRefusal(try await acme.subscribe("fleet/+/mgmt/acme/res/#")))
            #expect(MQTTClient.isRefusal(try await acme.subscribe("fleet/+/mgmt/other/res/#")))
            #expect(MQTTClient.isRefusal(try await acme.subscribe("fleet/h1/mgmt/other/res/r1")))
            // A home reads its own requests and the broadcast, not another home's.
            #expect(MQTTClient.isRefusal(try await h2.subscribe("fleet/h1/mgmt/+/req")))
            #expect(MQTTClient.isRefusal(try await h2.subscribe("fleet/h1/mgmt/acme/req")))
            // Nobody subscribes to everything.
            for client in [acme, h1, h2] {
                #expect(MQTTClient.isRefusal(try await client.subscribe("#")))
                #expect(MQTTClient.isRefusal(try await client.subscribe("fleet/#")))
            }
            // A home writes only under its own id: h2 cannot forge h1's answer.
            #expect(!MQTTClient.isSuccess(try await h2.publish(topic: "fleet/h1/mgmt/acme/res/r1", string: "x")))
            #expect(MQTTClient.isSuccess(try await h1.publish(topic: "fleet/h1/mgmt/acme/res/r1", string: "x")))
            // And what acme may receive excludes other's answers even when published.
            let other = try await connect(broker, "provider.other", passwords)
            #expect(!MQTTClient.isRefusal(try await other.subscribe("fleet/+/mgmt/other/res/#")))
            #expect(MQTTClient.isSuccess(try await h1.publish(topic: "fleet/h1/mgmt/other/res/r2", string: "y")))
            #expect(await firstMatch(other.messages, within: .seconds(5)) { $0.payloadString == "y" } != nil)
            #expect(await firstMatch(acme.messages, within: .milliseconds(300)) { $0.payloadString == "y" } == nil)
            for client in [acme, h1, h2, other] { await client.disconnect() }
        }
    }

    @Test func theReservedHomeIDIsRefused() async throws {
        #expect(throws: VGWError.self) { try CloudACLs.validate(id: "all", kind: "home") }
        #expect(throws: VGWError.self) { try CloudACLs.validate(id: "a/b", kind: "home") }
        #expect(throws: VGWError.self) { try CloudACLs.validate(id: "+", kind: "provider") }
    }

    // MARK: - FleetClient

    func withFleet(
        homes behaviours: [String: SimulatedHome.Behaviour],
        _ body: (FleetClient, [String: SimulatedHome]) async throws -> Void
    ) async throws {
        try await withCloud { broker, passwords in
            try await withTemporaryDirectory { dir in
                let keys = try Ed25519.KeyPair.generate()
                var homes: [String: SimulatedHome] = [:]
                for (id, behaviour) in behaviours.sorted(by: { $0.key < $1.key }) {
                    let store = try Store(path: dir.file("\(id).db"))
                    let authenticator = RequestAuthenticator(store: store, homeID: id)
                    try authenticator.register(publicKey: keys.publicKey, for: "acme")
                    let client = try await connect(broker, "home.\(id)", passwords, clientID: "bridge-\(id)")
                    homes[id] = try await SimulatedHome.start(
                        id: id, client: client, authenticator: authenticator, behaviour: behaviour)
                }
                let fleet = try await FleetClient.connect(
                    host: broker.host, port: broker.port, username: "provider.acme",
                    password: passwords["provider.acme"] ?? "", provider: "acme", keys: keys)
                do {
                    try await body(fleet, homes)
                } catch {
                    await fleet.close()
                    for home in homes.values { await home.stop() }
                    throw error
                }
                await fleet.close()
                for home in homes.values { await home.stop() }
            }
        }
    }

    @Test func threeHomesAnswerWithProgress() async throws {
        try await withFleet(homes: ["h1": .answer, "h2": .answer, "h3": .answer]) { fleet, homes in
            let reports = Mutex<[FleetProgress]>([])
            let results = await fleet.run(
                op: "vgw.list", args: ["x": 1], target: FleetTarget(homes: ["h1", "h2", "h3"]),
                timeout: .seconds(5), progress: { report in reports.withLock { $0.append(report) } })
            #expect(results.map(\.home) == ["h1", "h2", "h3"])
            #expect(results.allSatisfy { $0.ok && $0.latency != nil })
            #expect(results.map { $0.response?.result?["home"]?.stringValue } == ["h1", "h2", "h3"])
            let progress = reports.withLock { $0 }
            #expect(progress.map(\.answered) == [1, 2, 3])
            #expect(progress.allSatisfy { $0.expected == 3 && $0.failed == 0 })
            for home in homes.values { #expect(home.executed == 1) }
        }
    }

    @Test func broadcastToAllWaitsForTheExpectedHomes() async throws {
        try await withFleet(homes: ["h1": .answer, "h2": .answer, "h3": .answer]) { fleet, homes in
            let results = await fleet.run(
                op: "vgw.list", target: .all(expecting: ["h1", "h2", "h3"]), timeout: .seconds(5))
            #expect(results.map(\.home) == ["h1", "h2", "h3"])
            #expect(results.allSatisfy { $0.ok })
            for home in homes.values { #expect(home.executed == 1) }
        }
    }

    @Test func aSilentHomeTimesOut() async throws {
        try await withFleet(homes: ["h1": .answer, "h2": .answer, "h3": .silent]) { fleet, homes in
            let reports = Mutex<[FleetProgress]>([])
            let clock = ContinuousClock()
            let start = clock.now
            let results = await fleet.run(
                op: "vgw.list", target: FleetTarget(homes: ["h1", "h2", "h3"]), timeout: .milliseconds(1500),
                progress: { report in reports.withLock { $0.append(report) } })
            let elapsed = clock.now - start
            #expect(elapsed >= .milliseconds(1400) && elapsed < .seconds(4))
            #expect(results.map(\.ok) == [true, true, false])
            #expect(results[2].error?.code == .timeout)
            #expect(results[2].response == nil)
            // It was asked again and again: 0, 0.2, 0.6, 1.4 s.
            #expect(homes["h3"]?.received ?? 0 >= 3)
            #expect(reports.withLock { $0.last?.answered } == 2)
        }
    }

    @Test func retriesReachAHomeThatAnswersLate() async throws {
        // h2 loses the first two copies, as a QoS 0 bridge may; the third is executed once.
        try await withFleet(homes: ["h1": .answer, "h2": .dropFirst(2)]) { fleet, homes in
            let results = await fleet.run(
                op: "vgw.list", target: FleetTarget(homes: ["h1", "h2"]), timeout: .seconds(5))
            #expect(results.allSatisfy { $0.ok })
            #expect(results[1].attempts >= 3)
            #expect((results[1].latency ?? .zero) >= .milliseconds(500))
            #expect(homes["h2"]?.executed == 1)
            #expect(homes["h1"]?.executed == 1)
        }
    }

    @Test func aLostAnswerIsAnsweredFromTheCacheNotExecutedTwice() async throws {
        // h1 executes the first copy but its answer is lost; the retry gets the cached answer.
        try await withFleet(homes: ["h1": .loseFirstAnswer]) { fleet, homes in
            let results = await fleet.run(op: "vgw.list", target: FleetTarget(homes: ["h1"]), timeout: .seconds(5))
            #expect(results.map(\.ok) == [true])
            #expect(homes["h1"]?.executed == 1)
            #expect(homes["h1"]?.received ?? 0 >= 2)
        }
    }
}

extension FleetTests {
    @Test func aReplayedRefusalIsReplacedByTheRealAnswer() async throws {
        try await withFleet(homes: ["h1": .replayedFirst]) { fleet, homes in
            let results = await fleet.run(op: "vgw.list", target: FleetTarget(homes: ["h1"]), timeout: .seconds(5))
            #expect(results.map(\.ok) == [true])
            #expect(homes["h1"]?.executed == 1)
        }
    }
}

/// A home as the cloud sees it: a bridge identity that reads `fleet/<id>/mgmt/+/req` and
/// `fleet/all/mgmt/+/req`, verifies with `RequestAuthenticator` and answers on
/// `fleet/<id>/mgmt/<p>/res/<replyTo>`. Duplicates (refused as `replayed`) get the cached
/// answer, as vgwd does.
final class SimulatedHome: Sendable {
    enum Behaviour: Sendable {
        case answer, silent
        case dropFirst(Int)
        case loseFirstAnswer
        case replayedFirst
    }

    struct State {
        var received = 0
        var executed = 0
        var answered = 0
        var cache: [String: Response] = [:]
    }

    let id: String
    let client: MQTTClient
    let authenticator: RequestAuthenticator
    let behaviour: Behaviour
    let state = Mutex(State())
    let task = Mutex<Task<Void, Never>?>(nil)

    var received: Int { state.withLock { $0.received } }
    var executed: Int { state.withLock { $0.executed } }

    private init(id: String, client: MQTTClient, authenticator: RequestAuthenticator, behaviour: Behaviour) {
        self.id = id
        self.client = client
        self.authenticator = authenticator
        self.behaviour = behaviour
    }

    static func start(id: String, client: MQTTClient, authenticator: RequestAuthenticator, behaviour: Behaviour)
        async throws -> SimulatedHome
    {
        let home = SimulatedHome(id: id, client: client, authenticator: authenticator, behaviour: behaviour)
        let codes = try await client.subscribe(
            [FleetTopics.request(home: id, provider: "+"), FleetTopics.request(home: "all", provider: "+")])
        guard codes.allSatisfy({ !MQTTClient.isRefusal($0) }) else {
            throw VGWError(.forbidden, "home \(id) may not read its requests: \(codes)")
        }
        let task = Task {
            for await message in client.messages { await home.handle(message) }
        }
        home.task.withLock { $0 = task }
        return home
    }

    func handle(_ message: MQTTMessage) async {
        let levels = message.topic.split(separator: "/")
        guard levels.count == 5 else { return }
        let provider = String(levels[3])
        let count = state.withLock { state in
            state.received += 1
            return state.received
        }
        switch behaviour {
        case .silent: return
        case .dropFirst(let n) where count <= n: return
        default: break
        }
        guard let envelope = try? JSONCoding.decoder.decode(SignedRequest.self, from: Data(message.payload)) else {
            return
        }
        if case .replayedFirst = behaviour, count == 1 {
            // As if a duplicate overtook the original: a refusal, then the real answer.
            guard let bytes = Base64.decode(envelope.request),
                let request = try? Request.decode(bytes, maxSize: 1 << 20).get(),
                let payload = try? Response.failure(
                    id: request.id, error: VGWError(RequestAuthenticator.replayed, "duplicate"), home: id
                ).encoded()
            else { return }
            _ = try? await client.publish(
                topic: FleetTopics.response(home: id, provider: provider, replyTo: request.replyTo), payload: payload,
                qos: .atMostOnce)
            return
        }
        let nonce = envelope.auth.nonce
        let response: Response
        var replyTo: String?
        do {
            let bytes = try authenticator.verify(message.payload, target: provider).request
            let request = try Request.decode(bytes, maxSize: 1 << 20).get()
            replyTo = request.replyTo
            response = .success(
                id: request.id, result: ["home": .string(id), "op": .string(request.op)], home: id)
            state.withLock { state in
                state.executed += 1
                state.cache[nonce] = response
            }
        } catch let error as VGWError where error.code == RequestAuthenticator.replayed {
            guard let cached = state.withLock({ $0.cache[nonce] }) else { return }
            response = cached
        } catch {
            return
        }
        if replyTo == nil {
            let bytes = Base64.decode(envelope.request) ?? []
            replyTo = try? Request.decode(bytes, maxSize: 1 << 20).get().replyTo
        }
        let first = state.withLock { state in
            state.answered += 1
            return state.answered == 1
        }
        if case .loseFirstAnswer = behaviour, first { return }
        guard let replyTo, let payload = try? response.encoded() else { return }
        _ = try? await client.publish(
            topic: FleetTopics.response(home: id, provider: provider, replyTo: replyTo), payload: payload,
            qos: .atMostOnce)
    }

    func stop() async {
        await client.disconnect()
        task.withLock { $0?.cancel() }
    }
}
