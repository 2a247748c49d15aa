import Foundation
import MQTT
import Support
import Synchronization

/// Where a publisher and a subscriber meet: two client configurations and one topic.
struct ClientPair: Sendable {
    var publisher: MQTTConfiguration
    var subscriber: MQTTConfiguration
    var topic: String

    /// Connects both and subscribes the subscriber (checked).
    func connect(qos: QoS) async throws -> (publisher: MQTTClient, subscriber: MQTTClient) {
        let publisher = try await MQTTClient.connected(self.publisher)
        let subscriber: MQTTClient
        do {
            subscriber = try await MQTTClient.connected(self.subscriber)
        } catch {
            await publisher.disconnect()
            throw error
        }
        do {
            let code = try await subscriber.subscribe(topic, qos: qos)
            guard !MQTTClient.isRefusal(code) else { throw VGWError(.forbidden, "subscription refused (\(code))") }
        } catch {
            await publisher.disconnect()
            await subscriber.disconnect()
            throw error
        }
        return (publisher, subscriber)
    }
}

/// A ~100-byte payload: send time (ns, monotonic), sequence number, filler.
enum BenchPayload {
    static let size = 100

    static func make(sequence: UInt64, time: UInt64 = Clock.now()) -> [UInt8] {
        var bytes = [UInt8](repeating: 0x61, count: size)
        withUnsafeBytes(of: time.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        return bytes
    }

    static func time(of payload: [UInt8]) -> UInt64? {
        guard payload.count >= 8 else { return nil }
        return payload.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}

/// Throughput and latency between two clients of the same broker.
enum DataPlaneBench {
    struct Result {
        var rate: Double
        var delivered: Int
        var sent: Int
        var latency: Samples
        var slowest: Double
        var fastest: Double
        /// The broker's CPU time (utime + stime) per delivered message in the throughput run, µs.
        var brokerCPU: Double

        /// The median round's rate, the worst delivery, every latency sample.
        static func combine(_ rounds: [Result]) -> Result {
            let rates = rounds.map(\.rate).sorted()
            var latency = Samples()
            for round in rounds { latency.values += round.latency.values }
            let cpu = rounds.map(\.brokerCPU).sorted()
            return Result(
                rate: rates[rates.count / 2], delivered: rounds.map(\.delivered).min() ?? 0, sent: rounds[0].sent,
                latency: latency, slowest: rates.first ?? .nan, fastest: rates.last ?? .nan,
                brokerCPU: cpu[cpu.count / 2])
        }
    }

    /// QoS 1 publishes in flight at once (libmosquitto queues beyond its own window).
    static let window = 100

    static func run(_ pair: ClientPair, broker: pid_t, qos: QoS, messages: Int, latencySamples: Int) async throws
        -> Result
    {
        let ticks = ProcStats.cpuTicks(broker) ?? 0
        let (rate, delivered) = try await throughput(pair, qos: qos, messages: messages)
        let used = Double((ProcStats.cpuTicks(broker) ?? 0) - ticks) / ProcStats.ticksPerSecond
        let brokerCPU = used / Double(max(1, delivered)) * 1e6
        let latency = try await latency(pair, qos: qos, samples: latencySamples)
        return Result(
            rate: rate, delivered: delivered, sent: messages, latency: latency, slowest: rate, fastest: rate,
            brokerCPU: brokerCPU)
    }

    /// Publishes `messages` as fast as the client allows; the rate is what the subscriber
    /// received divided by the time from the first publish to the last delivery.
    static func throughput(_ pair: ClientPair, qos: QoS, messages: Int) async throws -> (Double, Int) {
        let (publisher, subscriber) = try await pair.connect(qos: qos)
        let progress = Mutex<(count: Int, last: UInt64)>((0, 0))
        let receiver = Task {
            for await _ in subscriber.messages {
                let done = progress.withLock { state -> Bool in
                    state.count += 1
                    state.last = Clock.now()
                    return state.count >= messages
                }
                if done { break }
            }
        }
        defer { receiver.cancel() }
        do {
            let topic = pair.topic
            let start = Clock.now()
            if qos == .atMostOnce {
                for index in 0..<messages {
                    try await publisher.publish(
                        topic: topic, payload: BenchPayload.make(sequence: UInt64(index)), qos: .atMostOnce)
                }
            } else {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<messages {
                        if index >= window { try await group.next() }
                        group.addTask {
                            let code = try await publisher.publish(
                                topic: topic, payload: BenchPayload.make(sequence: UInt64(index)), qos: qos)
                            guard MQTTClient.isSuccess(code) else {
                                throw VGWError(.forbidden, "publish refused (\(code))")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            // Wait for the last delivery; give up after 3 s without progress (QoS 0 may drop).
            var seen = -1
            var idleSince = Clock.now()
            while true {
                let count = progress.withLock { $0.count }
                if count >= messages { break }
                if count != seen {
                    seen = count
                    idleSince = Clock.now()
                } else if Clock.seconds(since: idleSince) > 3 {
                    break
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let (count, last) = progress.withLock { ($0.count, $0.last) }
            await publisher.disconnect()
            await subscriber.disconnect()
            let elapsed = Double(max(last, start + 1) - start) / 1e9
            return (Double(count) / elapsed, count)
        } catch {
            await publisher.disconnect()
            await subscriber.disconnect()
            throw error
        }
    }

    /// One message in flight at a time; latency = arrival time - send time in the payload.
    static func latency(_ pair: ClientPair, qos: QoS, samples count: Int) async throws -> Samples {
        let (publisher, subscriber) = try await pair.connect(qos: qos)
        var iterator = subscriber.messages.makeAsyncIterator()
        var samples = Samples()
        let warmup = min(200, count / 10)
        do {
            for index in 0..<(warmup + count) {
                let payload = BenchPayload.make(sequence: UInt64(index))
                let message: MQTTMessage?
                if qos == .atMostOnce {
                    try await publisher.publish(topic: pair.topic, payload: payload, qos: qos)
                    message = await iterator.next()
                } else {
                    async let acknowledged = publisher.publish(topic: pair.topic, payload: payload, qos: qos)
                    message = await iterator.next()
                    _ = try await acknowledged
                }
                let arrival = Clock.now()
                guard let message, let sent = BenchPayload.time(of: message.payload) else {
                    throw VGWError(.mqtt, "the subscriber stopped receiving")
                }
                if index >= warmup { samples.add(arrival - sent) }
            }
        } catch {
            await publisher.disconnect()
            await subscriber.disconnect()
            throw error
        }
        await publisher.disconnect()
        await subscriber.disconnect()
        return samples
    }
}

/// A publisher/subscriber pair looping QoS 0 round trips, recording when each completes,
/// so that the longest gap during an ACL change can be read afterwards.
final class StallProbe: Sendable {
    private let completions = Mutex<[UInt64]>([])
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let clients: (publisher: MQTTClient, subscriber: MQTTClient)
    private let topic: String

    /// Connects and starts looping. One probe per measurement window: cancelling a
    /// receive ends the client's message stream for good.
    init(_ pair: ClientPair) async throws {
        clients = try await pair.connect(qos: .atMostOnce)
        topic = pair.topic
        start()
    }

    private func start() {
        let (publisher, subscriber) = clients
        let topic = self.topic
        let loop = Task { [self] in
            var iterator = subscriber.messages.makeAsyncIterator()
            var sequence: UInt64 = 0
            while !Task.isCancelled {
                sequence += 1
                guard
                    (try? await publisher.publish(
                        topic: topic, payload: BenchPayload.make(sequence: sequence), qos: .atMostOnce)) != nil,
                    await iterator.next() != nil
                else { return }
                let now = Clock.now()
                self.completions.withLock { $0.append(now) }
            }
        }
        task.withLock { $0 = loop }
    }

    private func stopLoop() async {
        let loop = task.withLock { value -> Task<Void, Never>? in
            defer { value = nil }
            return value
        }
        loop?.cancel()
        await loop?.value
    }

    /// The longest time without a completed round trip within [from, to], in ms.
    func maxGapMs(from: UInt64, to: UInt64) -> Double {
        let times = completions.withLock { $0 }.filter { $0 >= from && $0 <= to }
        var previous = from
        var gap: UInt64 = 0
        for time in times {
            gap = max(gap, time - previous)
            previous = time
        }
        gap = max(gap, to - previous)
        return Double(gap) / 1e6
    }

    func roundTrips(from: UInt64, to: UInt64) -> Int {
        completions.withLock { $0 }.filter { $0 >= from && $0 <= to }.count
    }

    func close() async {
        await stopLoop()
        await clients.publisher.disconnect()
        await clients.subscriber.disconnect()
    }
}
