import Crypto
import Foundation
import Protocol
import Support
import Synchronization

/// One command of the dynamic security plugin's `$CONTROL` API.
public struct DynSecCommand: Sendable, Equatable {
    public var command: String
    public var arguments: [String: JSONValue]
    /// For clean-up steps whose target may already be gone (`deleteRole` of a role that
    /// never existed): their errors are expected and not reported.
    public var tolerateFailure: Bool

    public init(_ command: String, _ arguments: [String: JSONValue] = [:], tolerateFailure: Bool = false) {
        self.command = command
        self.arguments = arguments
        self.tolerateFailure = tolerateFailure
    }
}

/// Builds the commands for each change of the access model; `AccessPolicy` decides the ACLs.
public enum DynSecCommands {
    static func acls(_ acls: [ACL]) -> JSONValue {
        .array(
            acls.map { acl in
                var object: [String: JSONValue] = [
                    "acltype": .string(acl.acltype.rawValue), "topic": .string(acl.topic), "allow": .bool(acl.allow),
                ]
                if let priority = acl.priority { object["priority"] = .number(Double(priority)) }
                return .object(object)
            })
    }

    /// Moves a role from one ACL list to another with the fewest changes (each change
    /// kicks the role's clients once per batch, not per ACL).
    public static func updateRole(_ provider: ProviderID, from old: [ACL], to new: [ACL]) -> [DynSecCommand] {
        updateACLs(role: AccessPolicy.roleName(provider), from: old, to: new)
    }

    /// The ACL changes that turn role `name` from `old` into `new`.
    public static func updateACLs(role name: String, from old: [ACL], to new: [ACL]) -> [DynSecCommand] {
        let role = JSONValue.string(name)
        let removed = old.filter { !new.contains($0) }.map { acl in
            DynSecCommand(
                "removeRoleACL",
                ["rolename": role, "acltype": .string(acl.acltype.rawValue), "topic": .string(acl.topic)])
        }
        let added = new.filter { !old.contains($0) }.map { acl in
            DynSecCommand(
                "addRoleACL",
                [
                    "rolename": role, "acltype": .string(acl.acltype.rawValue), "topic": .string(acl.topic),
                    "allow": .bool(acl.allow),
                ])
        }
        return removed + added
    }

    /// Removes every identity and the role of a provider.
    public static func deleteProvider(_ provider: ProviderID, clients: [ClientIdentity]) -> [DynSecCommand] {
        clients.map { DynSecCommand("deleteClient", ["username": .string($0.username)], tolerateFailure: true) } + [
            DynSecCommand("deleteRole", ["rolename": .string(AccessPolicy.roleName(provider))], tolerateFailure: true)
        ]
    }

    /// Disabling a client disconnects it at once and refuses it until it is enabled.
    public static func setEnabled(_ enabled: Bool, clients: [ClientIdentity]) -> [DynSecCommand] {
        clients.map { DynSecCommand(enabled ? "enableClient" : "disableClient", ["username": .string($0.username)]) }
    }

    /// A client bound to its client id, holding its provider's role. The plugin hashes the
    /// password itself with its own salt; the store keeps our hash of the same password.
    public static func createClient(_ identity: ClientIdentity, password: String, enabled: Bool) -> [DynSecCommand] {
        let username = JSONValue.string(identity.username)
        var commands = [
            DynSecCommand("deleteClient", ["username": username], tolerateFailure: true),
            DynSecCommand(
                "createClient",
                [
                    "username": username, "clientid": .string(identity.clientID), "password": .string(password),
                    "roles": [["rolename": .string(AccessPolicy.roleName(identity.provider))]],
                ]),
        ]
        if !enabled { commands += setEnabled(false, clients: [identity]) }
        return commands
    }

    public static func deleteClient(_ identity: ClientIdentity) -> [DynSecCommand] {
        [DynSecCommand("deleteClient", ["username": .string(identity.username)])]
    }
}

/// Sends batches of commands to the plugin and waits for its answers.
///
/// The plugin answers each message with one message on `$CONTROL/.../response` holding one
/// response per command, in order, echoing each command's `correlationData`. The owner of
/// the MQTT connection routes those messages here with `deliver(_:)`; this type never reads
/// the connection itself, so a request handler awaiting a batch cannot block the reader.
public final class DynSecClient: Sendable {
    public typealias Send = @Sendable (_ payload: [UInt8]) async throws -> Void

    private struct Pending {
        var continuation: CheckedContinuation<[JSONValue], any Error>
    }

    private let send: Send
    private let timeout: Duration
    private let pending = Mutex<[String: Pending]>([:])
    private let counter = Atomic<UInt64>(0)
    private let logger = Logger("dynsec")

    public init(timeout: Duration = .seconds(10), send: @escaping Send) {
        self.send = send
        self.timeout = timeout
    }

    /// Runs one read command (`listRoles`, `getGroup`...) and returns its `data` object.
    public func query(_ command: DynSecCommand) async throws -> JSONValue {
        try await run([command])[0]["data"] ?? .null
    }

    /// Runs a batch as one message. Throws `broker_error` naming the first command that
    /// failed (tolerated failures aside) and `timeout` if the plugin does not answer.
    public func execute(_ commands: [DynSecCommand]) async throws {
        guard !commands.isEmpty else { return }
        _ = try await run(commands)
    }

    /// Sends the batch and returns one response per command, in order.
    private func run(_ commands: [DynSecCommand]) async throws -> [JSONValue] {
        let batch = "vgw-\(counter.wrappingAdd(1, ordering: .relaxed).newValue)"
        var encoded: [JSONValue] = []
        for (index, command) in commands.enumerated() {
            var object = command.arguments
            object["command"] = .string(command.command)
            object["correlationData"] = .string("\(batch):\(index)")
            encoded.append(.object(object))
        }
        let payload = try JSONCoding.encoder.encode(JSONValue.object(["commands": .array(encoded)]))
        let responses = try await awaitResponses(batch: batch, payload: Array(payload))
        var ordered: [JSONValue] = []
        for (index, command) in commands.enumerated() {
            let response = responses.first { $0["correlationData"]?.stringValue == "\(batch):\(index)" }
            guard let response else {
                throw VGWError(.broker, "dynamic security plugin did not answer \(command.command)")
            }
            if !command.tolerateFailure, let error = response["error"]?.stringValue {
                throw VGWError(.broker, "dynamic security \(command.command) failed: \(error.lowercased())")
            }
            ordered.append(response)
        }
        return ordered
    }

    /// Hands a message from `$CONTROL/dynamic-security/v1/response` to the waiting batch.
    public func deliver(_ payload: [UInt8]) {
        guard let value = try? JSONCoding.decoder.decode(JSONValue.self, from: Data(payload)),
            let responses = value["responses"]?.arrayValue,
            let correlation = responses.first?["correlationData"]?.stringValue,
            let batch = correlation.split(separator: ":").first.map(String.init)
        else {
            logger.debug("ignored a dynamic security response without our correlation data")
            return
        }
        let waiter = pending.withLock { $0.removeValue(forKey: batch) }
        waiter?.continuation.resume(returning: responses)
    }

    private func awaitResponses(batch: String, payload: [UInt8]) async throws -> [JSONValue] {
        let timeout = self.timeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.fail(batch: batch, VGWError(.timeout, "dynamic security plugin did not answer within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            pending.withLock { $0[batch] = Pending(continuation: continuation) }
            Task {
                do {
                    try await send(payload)
                } catch {
                    fail(batch: batch, VGWError.wrap(error, .broker, "cannot send to the dynamic security plugin"))
                }
            }
        }
    }

    private func fail(batch: String, _ error: VGWError) {
        let waiter = pending.withLock { $0.removeValue(forKey: batch) }
        waiter?.continuation.resume(throwing: error)
    }
}
