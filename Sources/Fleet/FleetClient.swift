import Crypto
import Foundation
import MQTT
import Protocol
import Support
import Synchronization

/// Which homes a fleet request goes to: explicit ids, or every home (`all`) with the list
/// of homes expected to answer.
public struct FleetTarget: Sendable, Equatable {
    public var homes: [String]
    /// For `all`: the homes to wait for and report on. Nil waits the whole timeout and
    /// reports whoever answered.
    public var expected: [String]?

    public init(homes: [String], expected: [String]? = nil) {
        self.homes = homes
        self.expected = expected
    }

    public static func all(expecting expected: [String]? = nil) -> FleetTarget {
        FleetTarget(homes: [FleetTopics.allHomes], expected: expected)
    }

    public var isAll: Bool { homes == [FleetTopics.allHomes] }

    /// The homes the summary is about.
    public var awaited: [String]? { isAll ? expected : (expected ?? homes) }
}

/// What one home answered, or why it did not.
public struct HomeResult: Sendable, Equatable {
    public var home: String
    public var response: Response?
    /// The error of an error response, or `timeout` / `forbidden` when there was none.
    public var error: VGWError?
    /// From the first publication of the request to the answer.
    public var latency: Duration?
    /// How many times the request was published for this home before it answered.
    public var attempts: Int

    public init(home: String, response: Response?, error: VGWError?, latency: Duration?, attempts: Int = 1) {
        self.home = home
        self.response = response
        self.error = error
        self.latency = latency
        self.attempts = attempts
    }

    public var ok: Bool { error == nil && response?.ok == true }

    public static func == (lhs: HomeResult, rhs: HomeResult) -> Bool {
        lhs.home == rhs.home && lhs.response == rhs.response && lhs.error?.code == rhs.error?.code
            && lhs.latency == rhs.latency && lhs.attempts == rhs.attempts
    }
}

/// Reported after each answer.
public struct FleetProgress: Sendable {
    public var answered: Int
    /// Nil when sending to `all` without an expected list.
    public var expected: Int?
    /// Answers that are errors.
    public var failed: Int
    /// The answer that caused this report.
    public var latest: HomeResult
}

/// The provider's fan-out client: one signed request to many homes through the cloud
/// broker, with retries until each home answers or its time is up.
///
/// The cloud-to-home bridge carries requests at QoS 0, so a request can be lost. The same
/// signed envelope is published again to every home that has not answered yet (200 ms,
/// 400 ms, ... at most 2 s apart). A home keeps the nonces of requests it executed and
/// answers a duplicate with the cached response, so a retry is never executed twice:
/// at-least-once delivery, at-most-once execution.
public final class FleetClient: Sendable {
    public let provider: String
    public let replyTo: String
    private let keys: Ed25519.KeyPair
    private let client: MQTTClient
    /// Open runs by request id: where their answers go.
    private let runs = Mutex<[String: AsyncStream<Answer>.Continuation]>([:])
    private let reader: Mutex<Task<Void, Never>?> = Mutex(nil)

    /// The first retry's delay, and the cap of the exponential backoff.
    public static let firstRetry: Duration = .milliseconds(200)
    public static let maxRetry: Duration = .seconds(2)
    /// At most this many first publications (QoS 1, awaiting PUBACK) in flight at once.
    static let publishConcurrency = 64

    struct Answer: Sendable {
        var home: String
        var response: Response
    }

    /// Connects to the cloud broker as the provider and subscribes to its private reply
    /// topic on every home.
    public static func connect(
        host: String, port: UInt16, username: String, password: String, clientID: String? = nil,
        provider: String, keys: Ed25519.KeyPair, tls: MQTTTLS? = nil, operationTimeout: Duration = .seconds(10)
    ) async throws -> FleetClient {
        guard Request.isValidReplyTo(provider) else {
            throw VGWError(.invalidArgument, "provider id '\(provider)' is not a valid topic level")
        }
        let replyTo = "f" + (try SecureRandom.token(bytes: 9))
        var configuration = MQTTConfiguration(
            host: host, port: Int(port), clientID: clientID ?? "\(username)-\(replyTo)", username: username,
            password: password, reconnect: true, operationTimeout: operationTimeout)
        configuration.tls = tls
        let client = try MQTTClient(configuration)
        try await client.connect()
        let fleet = FleetClient(client: client, provider: provider, keys: keys, replyTo: replyTo)
        do {
            let filter = FleetTopics.responses(provider: provider, replyTo: replyTo)
            let code = try await client.subscribe(filter, qos: .atLeastOnce)
            guard !MQTTClient.isRefusal(code) else {
                throw VGWError(.forbidden, "the cloud broker refused \(filter) (reason \(code))")
            }
        } catch {
            await fleet.close()
            throw error
        }
        return fleet
    }

    private init(client: MQTTClient, provider: String, keys: Ed25519.KeyPair, replyTo: String) {
        self.client = client
        self.provider = provider
        self.keys = keys
        self.replyTo = replyTo
        let task = Task { [weak self] in
            for await message in client.messages {
                guard let self, let response = try? Response.decode(message.payload), let id = response.id,
                    let home = FleetTopics.home(of: message.topic) ?? response.home
                else { continue }
                let run = self.runs.withLock { $0[id] }
                run?.yield(Answer(home: home, response: response))
            }
        }
        reader.withLock { $0 = task }
    }

    /// Sends `op` to the target's homes and returns one result per home: per awaited home
    /// in the target's order, then any other home that answered (for `all`).
    public func run(
        op: String, args: [String: JSONValue] = [:], target: FleetTarget, timeout: Duration = .seconds(10),
        validFor: Int64 = 60, progress: @escaping @Sendable (FleetProgress) -> Void = { _ in }
    ) async -> [HomeResult] {
        let homes = target.homes
        let awaited = target.awaited
        guard !homes.isEmpty else { return [] }
        let clock = ContinuousClock()
        let start = clock.now
        func failAll(_ error: VGWError) -> [HomeResult] {
            (awaited ?? []).map { HomeResult(home: $0, response: nil, error: error, latency: nil, attempts: 0) }
        }
        // One request, one envelope per target.
        let envelopes: [(home: String, topic: String, payload: [UInt8])]
        let requestID: String
        do {
            requestID = try SecureRandom.token(bytes: 12)
            let bytes = try Request(id: requestID, op: op, args: args, replyTo: replyTo).encoded()
            envelopes = try homes.map { home in
                guard Request.isValidReplyTo(home) else {
                    throw VGWError(.invalidArgument, "home id '\(home)' is not a valid topic level")
                }
                let signed = try RequestSigner.sign(
                    bytes, home: home, provider: provider, keys: keys, validFor: validFor)
                let payload = Array(try JSONCoding.encoder.encode(signed))
                return (home, FleetTopics.request(home: home, provider: provider), payload)
            }
        } catch {
            return failAll(VGWError.wrap(error, .internalError, "cannot build the request"))
        }

        let (answers, continuation) = AsyncStream.makeStream(of: Answer.self)
        runs.withLock { $0[requestID] = continuation }
        defer { _ = runs.withLock { $0.removeValue(forKey: requestID) } }

        let state = Mutex(RunState(awaited: awaited))
        // First publication at QoS 1: the PUBACK tells a refused topic (no ACL) from a
        // lost message. Retries go at QoS 0 like the bridge.
        let refused = await publishFirst(envelopes)
        for (home, error) in refused {
            continuation.yield(
                Answer(home: home, response: .failure(id: requestID, error: error, home: home)))
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            continuation.finish()
        }
        let retrier = Task { [client] in
            var delay = Self.firstRetry
            var attempt = 1
            while !Task.isCancelled {
                try? await Task.sleep(for: delay)
                if Task.isCancelled { break }
                attempt += 1
                let pending = state.withLock { state in
                    envelopes.filter { state.needsRetry(target: $0.home, isAll: target.isAll) }
                }
                if pending.isEmpty { break }
                state.withLock { $0.attempts = attempt }
                for envelope in pending {
                    _ = try? await client.publish(topic: envelope.topic, payload: envelope.payload, qos: .atMostOnce)
                }
                delay = min(delay * 2, Self.maxRetry)
            }
        }

        for await answer in answers {
            let latency = clock.now - start
            let report: FleetProgress? = state.withLock { state in
                state.record(answer, latency: latency, refused: refused[answer.home] != nil)
            }
            if let report { progress(report) }
            if state.withLock({ $0.isComplete }) { break }
        }
        timer.cancel()
        retrier.cancel()
        continuation.finish()
        let order = awaited ?? (target.isAll ? [] : homes)
        return state.withLock { state in state.results(order: order) }
    }

    /// Publishes each envelope once at QoS 1, a bounded number at a time; returns the
    /// homes whose request the broker refused.
    private func publishFirst(_ envelopes: [(home: String, topic: String, payload: [UInt8])]) async
        -> [String: VGWError]
    {
        let client = self.client
        return await withTaskGroup(of: (String, VGWError?).self) { group in
            var refused: [String: VGWError] = [:]
            var iterator = envelopes.makeIterator()
            func addNext() -> Bool {
                guard let envelope = iterator.next() else { return false }
                group.addTask {
                    do {
                        let code = try await client.publish(
                            topic: envelope.topic, payload: envelope.payload, qos: .atLeastOnce)
                        if MQTTClient.isSuccess(code) { return (envelope.home, nil) }
                        return (
                            envelope.home,
                            VGWError(
                                .forbidden, "the cloud broker refused the request to \(envelope.topic) (reason \(code))"
                            )
                        )
                    } catch {
                        // Not fatal: the retries publish it again until the timeout.
                        return (envelope.home, nil)
                    }
                }
                return true
            }
            for _ in 0..<Self.publishConcurrency where addNext() {}
            while let (home, error) = await group.next() {
                if let error { refused[home] = error }
                _ = addNext()
            }
            return refused
        }
    }

    public func close() async {
        let open = runs.withLock { runs in
            defer { runs = [:] }
            return Array(runs.values)
        }
        for run in open { run.finish() }
        await client.disconnect()
        reader.withLock { $0?.cancel() }
    }
}

/// The answers of one run so far.
struct RunState: Sendable {
    let awaited: Set<String>?
    var results: [String: HomeResult] = [:]
    var attempts = 1

    init(awaited: [String]?) {
        self.awaited = awaited.map(Set.init)
    }

    /// The first answer of a home counts, except that a `replayed` refusal (the answer to
    /// a duplicate that arrived before the original's answer was cached) is replaced by a
    /// later real answer.
    mutating func record(_ answer: FleetClient.Answer, latency: Duration, refused: Bool) -> FleetProgress? {
        let response = answer.response
        if let existing = results[answer.home], existing.error?.code != "replayed" { return nil }
        let error = response.ok ? nil : VGWError(response.error?.code ?? .internalError, response.error?.message ?? "")
        let result = HomeResult(
            home: answer.home, response: refused ? nil : response, error: error, latency: refused ? nil : latency,
            attempts: attempts)
        results[answer.home] = result
        let counted = results.values.filter { awaited?.contains($0.home) ?? true }
        return FleetProgress(
            answered: counted.count, expected: awaited?.count, failed: counted.filter { !$0.ok }.count,
            latest: result)
    }

    /// Whether `home` gave its final answer: a `replayed` refusal may still be replaced.
    func settled(_ home: String) -> Bool {
        guard let result = results[home] else { return false }
        return result.error?.code != "replayed"
    }

    var isComplete: Bool {
        guard let awaited else { return false }
        return awaited.allSatisfy(settled)
    }

    /// Whether the envelope for `target` should be sent again.
    func needsRetry(target: String, isAll: Bool) -> Bool {
        if isAll {
            guard let awaited else { return true }
            return !awaited.allSatisfy(settled)
        }
        return !settled(target)
    }

    func results(order: [String]) -> [HomeResult] {
        var out = order.map { home in
            results[home]
                ?? HomeResult(
                    home: home, response: nil,
                    error: VGWError(.timeout, "no answer from \(home) after \(attempts) attempts"), latency: nil,
                    attempts: attempts)
        }
        let listed = Set(order)
        out += results.values.filter { !listed.contains($0.home) }.sorted { $0.home < $1.home }
        return out
    }
}
