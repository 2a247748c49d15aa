import Crypto
import Foundation
import MQTT
import Protocol
import Support
import Synchronization

/// Speaks the management protocol to a home broker: sends requests on `mgmt/<target>/req`
/// and awaits their responses on a private reply topic. Used by `vgw`, by the tests with
/// a provider's credentials, and by anyone who wants an example of the protocol.
public final class ManagementClient: Sendable {
    public let target: ProviderID
    private let client: MQTTClient
    /// This client's reply level: responses come to `mgmt/<target>/res/<replyTo>`.
    public let replyTo: String
    private let timeout: Duration
    private let waiting = Mutex<[String: CheckedContinuation<Response, any Error>]>([:])
    private let reader: Mutex<Task<Void, Never>?> = Mutex(nil)

    /// Connects with the given identity and subscribes to its reply topic.
    public static func connect(
        host: String, port: UInt16, username: String, password: String, clientID: String? = nil,
        target: ProviderID = .core, timeout: Duration = .seconds(10), reconnect: Bool = false
    ) async throws -> ManagementClient {
        let replyTo = "r" + (try SecureRandom.token(bytes: 9))
        let client = try MQTTClient(
            MQTTConfiguration(
                host: host, port: Int(port), clientID: clientID ?? "\(username)-\(replyTo)", username: username,
                password: password, reconnect: reconnect, operationTimeout: timeout))
        try await client.connect()
        let management = ManagementClient(client: client, target: target, replyTo: replyTo, timeout: timeout)
        do {
            let code = try await client.subscribe(Topics.response(target, replyTo: replyTo), qos: .atLeastOnce)
            guard !MQTTClient.isRefusal(code) else {
                throw VGWError(.forbidden, "the broker refused the reply topic of \(target) (reason \(code))")
            }
        } catch {
            await client.disconnect()
            throw error
        }
        return management
    }

    private init(client: MQTTClient, target: ProviderID, replyTo: String, timeout: Duration) {
        self.client = client
        self.target = target
        self.replyTo = replyTo
        self.timeout = timeout
        let task = Task { [weak self] in
            for await message in client.messages {
                // MQTT 5 correlation data is echoed even for requests too broken to have an id.
                guard let response = try? Response.decode(message.payload),
                    let key = message.correlationData.map({ String(decoding: $0, as: UTF8.self) }) ?? response.id
                else { continue }
                let waiter = self?.waiting.withLock { $0.removeValue(forKey: key) }
                waiter?.resume(returning: response)
            }
        }
        reader.withLock { $0 = task }
    }

    /// Sends one request and returns its response (which may be an error response).
    public func send(_ op: String, _ args: [String: JSONValue] = [:]) async throws -> Response {
        let id = try SecureRandom.token(bytes: 9)
        let request = Request(id: id, op: op, args: args, replyTo: replyTo)
        return try await send(raw: try request.encoded(), key: id)
    }

    /// Sends any payload (tests send malformed ones) and awaits its response.
    public func send(raw payload: [UInt8]) async throws -> Response {
        try await send(raw: payload, key: try SecureRandom.token(bytes: 9))
    }

    /// `key` travels as MQTT 5 correlation data and identifies the response.
    private func send(raw payload: [UInt8], key id: String) async throws -> Response {
        let timeout = self.timeout
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            let waiter = self?.waiting.withLock { $0.removeValue(forKey: id) }
            waiter?.resume(throwing: VGWError(.timeout, "no response within \(timeout): is vgwd running?"))
        }
        defer { timer.cancel() }
        let responseTopic = Topics.response(target, replyTo: replyTo)
        return try await withCheckedThrowingContinuation { continuation in
            waiting.withLock { $0[id] = continuation }
            let client = self.client
            let topic = Topics.request(target)
            Task {
                do {
                    let code = try await client.publish(
                        topic: topic, payload: payload, qos: .atLeastOnce, responseTopic: responseTopic,
                        correlationData: Array(id.utf8))
                    if !MQTTClient.isSuccess(code) {
                        throw VGWError(.forbidden, "the broker refused the request to \(topic) (reason \(code))")
                    }
                } catch {
                    let waiter = self.waiting.withLock { $0.removeValue(forKey: id) }
                    waiter?.resume(throwing: VGWError.wrap(error, .mqtt, "cannot send the request"))
                }
            }
        }
    }

    /// Sends a request and returns its result, throwing the error of an error response.
    public func call(_ op: String, _ args: [String: JSONValue] = [:]) async throws -> JSONValue {
        try await send(op, args).get()
    }

    public func close() async {
        await client.disconnect()
        reader.withLock { $0?.cancel() }
        let pending = waiting.withLock { value in
            defer { value = [:] }
            return value
        }
        for waiter in pending.values { waiter.resume(throwing: VGWError(.unavailable, "management client closed")) }
    }
}
