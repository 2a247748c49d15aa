import Foundation
import Protocol
import Support
import Synchronization

/// One provider's traffic as the meter plugin counts it, cumulative since the broker started.
///
/// `messagesIn`/`bytesIn`: publishes by the provider's clients that passed the quota (dynamic
/// security may still refuse them). `messagesOut`/`bytesOut`: deliveries to its clients.
/// `denied`: publishes the quota throttled. Bytes are payload bytes.
public struct ProviderTraffic: Codable, Sendable, Equatable {
    public var messagesIn: UInt64
    public var bytesIn: UInt64
    public var messagesOut: UInt64
    public var bytesOut: UInt64
    public var denied: UInt64

    public init(
        messagesIn: UInt64 = 0, bytesIn: UInt64 = 0, messagesOut: UInt64 = 0, bytesOut: UInt64 = 0, denied: UInt64 = 0
    ) {
        self.messagesIn = messagesIn
        self.bytesIn = bytesIn
        self.messagesOut = messagesOut
        self.bytesOut = bytesOut
        self.denied = denied
    }
}

/// One command of the meter plugin's `$CONTROL/vgw-meter/v1` API.
public struct MeterCommand: Sendable, Equatable {
    public var command: String
    public var arguments: [String: JSONValue]

    public init(_ command: String, _ arguments: [String: JSONValue] = [:]) {
        self.command = command
        self.arguments = arguments
    }

    /// Rates per second; 0 is unlimited. Each bucket holds one second's worth (the burst).
    public static func setQuota(provider: String, messagesPerSecond: Double, bytesPerSecond: Double) -> MeterCommand {
        MeterCommand(
            "setQuota",
            [
                "provider": .string(provider), "messagesPerSecond": .number(messagesPerSecond),
                "bytesPerSecond": .number(bytesPerSecond),
            ])
    }

    /// Forgets the provider's quota and counters.
    public static func removeProvider(_ provider: String) -> MeterCommand {
        MeterCommand("removeProvider", ["provider": .string(provider)])
    }

    public static let getStats = MeterCommand("getStats")
}

/// Topics and payloads of the meter plugin (Sources/VGWMeterPlugin).
public enum MeterTopics {
    public static let control = "$CONTROL/vgw-meter/v1"
    public static let response = "$CONTROL/vgw-meter/v1/response"
    /// Published by the plugin at most once per `stats_interval` (1 s) when counters changed.
    public static let stats = "$CONTROL/vgw-meter/v1/stats"

    /// The `{"commands":[...]}` payload, each command with its correlation data.
    public static func payload(_ commands: [MeterCommand], correlation: (Int) -> String) throws -> [UInt8] {
        let encoded: [JSONValue] = commands.enumerated().map { index, command in
            var object = command.arguments
            object["command"] = .string(command.command)
            object["correlationData"] = .string(correlation(index))
            return .object(object)
        }
        return Array(try JSONCoding.encoder.encode(JSONValue.object(["commands": .array(encoded)])))
    }

    private struct Stats: Decodable { var providers: [String: ProviderTraffic] }

    /// Parses a message of the stats topic, `{"providers":{"acme":{...}}}`.
    public static func parseStats(_ payload: [UInt8]) throws -> [String: ProviderTraffic] {
        do {
            return try JSONDecoder().decode(Stats.self, from: Data(payload)).providers
        } catch {
            throw VGWError.wrap(error, .broker, "invalid meter stats")
        }
    }
}

/// Sends batches of commands to the meter plugin and waits for its answers, like
/// `DynSecClient`: the owner of the MQTT connection subscribes to `MeterTopics.response`
/// and routes its messages here with `deliver(_:)`.
public final class MeterClient: Sendable {
    public typealias Send = @Sendable (_ payload: [UInt8]) async throws -> Void

    private let send: Send
    private let timeout: Duration
    private let pending = Mutex<[String: CheckedContinuation<[UInt8], any Error>]>([:])
    private let counter = Atomic<UInt64>(0)
    private let logger = Logger("meter")

    public init(timeout: Duration = .seconds(10), send: @escaping Send) {
        self.send = send
        self.timeout = timeout
    }

    /// Sets a provider's quota (0 = unlimited).
    public func setQuota(provider: String, messagesPerSecond: Double, bytesPerSecond: Double) async throws {
        _ = try await run([
            .setQuota(provider: provider, messagesPerSecond: messagesPerSecond, bytesPerSecond: bytesPerSecond)
        ])
    }

    public func removeProvider(_ provider: String) async throws {
        _ = try await run([.removeProvider(provider)])
    }

    /// Every metered provider's counters.
    public func stats() async throws -> [String: ProviderTraffic] {
        let payload = try await run([.getStats])
        struct Data_: Decodable { var providers: [String: ProviderTraffic] }
        struct Response: Decodable { var data: Data_? }
        struct Responses: Decodable { var responses: [Response] }
        guard let data = try? JSONDecoder().decode(Responses.self, from: Data(payload)).responses.first?.data else {
            throw VGWError(.broker, "meter plugin answered getStats without data")
        }
        return data.providers
    }

    /// Runs a batch as one message; throws `broker_error` naming the first command that failed.
    @discardableResult
    public func execute(_ commands: [MeterCommand]) async throws -> [JSONValue] {
        guard !commands.isEmpty else { return [] }
        let payload = try await run(commands)
        return try responses(payload, commands: commands, batch: nil)
    }

    private func run(_ commands: [MeterCommand]) async throws -> [UInt8] {
        let batch = "meter-\(counter.wrappingAdd(1, ordering: .relaxed).newValue)"
        let payload = try MeterTopics.payload(commands) { "\(batch):\($0)" }
        let answer = try await awaitResponse(batch: batch, payload: payload)
        _ = try responses(answer, commands: commands, batch: batch)
        return answer
    }

    private func responses(_ payload: [UInt8], commands: [MeterCommand], batch: String?) throws -> [JSONValue] {
        guard let value = try? JSONCoding.decoder.decode(JSONValue.self, from: Data(payload)),
            let responses = value["responses"]?.arrayValue
        else { throw VGWError(.broker, "meter plugin sent an invalid response") }
        var ordered: [JSONValue] = []
        for (index, command) in commands.enumerated() {
            let response =
                batch.map { batch in responses.first { $0["correlationData"]?.stringValue == "\(batch):\(index)" } }
                ?? (index < responses.count ? responses[index] : nil)
            guard let response else { throw VGWError(.broker, "meter plugin did not answer \(command.command)") }
            if let error = response["error"]?.stringValue {
                throw VGWError(.broker, "meter \(command.command) failed: \(error.lowercased())")
            }
            ordered.append(response)
        }
        return ordered
    }

    /// Hands a message from `$CONTROL/vgw-meter/v1/response` to the waiting batch.
    public func deliver(_ payload: [UInt8]) {
        guard let value = try? JSONCoding.decoder.decode(JSONValue.self, from: Data(payload)),
            let correlation = value["responses"]?.arrayValue?.first?["correlationData"]?.stringValue,
            let batch = correlation.split(separator: ":").first.map(String.init)
        else {
            logger.debug("ignored a meter response without our correlation data")
            return
        }
        let waiter = pending.withLock { $0.removeValue(forKey: batch) }
        waiter?.resume(returning: payload)
    }

    private func awaitResponse(batch: String, payload: [UInt8]) async throws -> [UInt8] {
        let timeout = self.timeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.fail(batch: batch, VGWError(.timeout, "meter plugin did not answer within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            pending.withLock { $0[batch] = continuation }
            Task {
                do {
                    try await send(payload)
                } catch {
                    fail(batch: batch, VGWError.wrap(error, .broker, "cannot send to the meter plugin"))
                }
            }
        }
    }

    private func fail(batch: String, _ error: VGWError) {
        let waiter = pending.withLock { $0.removeValue(forKey: batch) }
        waiter?.resume(throwing: error)
    }
}
