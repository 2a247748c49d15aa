import Broker
import Crypto
import Foundation
import MQTT
import Protocol
import Support
import Synchronization

/// The cloud broker's access model (docs/fleet.md, deploy/cloud/README.md): one role and
/// one client per home and per provider, everything else denied.
public enum CloudACLs {
    public static func homeRole(_ home: String) -> String { "fleet-home-\(home)" }
    public static func providerRole(_ provider: String) -> String { "fleet-provider-\(provider)" }
    public static func homeUsername(_ home: String) -> String { "home.\(home)" }
    public static func homeClientID(_ home: String) -> String { "bridge-\(home)" }
    public static func providerUsername(_ provider: String) -> String { "provider.\(provider)" }

    /// A home's bridge reads the requests to it and to every home, and writes only under
    /// its own `fleet/<home>/`.
    public static func home(_ home: String) -> [ACL] {
        ACL.read("fleet/\(home)/mgmt/+/req") + ACL.read("fleet/\(FleetTopics.allHomes)/mgmt/+/req") + [
            ACL(.publishClientSend, "fleet/\(home)/mgmt/+/res/#"),
            ACL(.publishClientSend, "fleet/\(home)/status/#"),
            ACL(.publishClientSend, "fleet/\(home)/vgw/+/export/#"),
        ]
    }

    /// A provider writes requests under its own id (to any home, and `+` includes `all`)
    /// and reads only what homes send to it.
    public static func provider(_ provider: String) -> [ACL] {
        [ACL(.publishClientSend, "fleet/+/mgmt/\(provider)/req")] + ACL.read("fleet/+/mgmt/\(provider)/res/#")
            + ACL.read("fleet/+/status/\(provider)/#") + ACL.read("fleet/+/vgw/\(provider)/export/#")
    }

    /// Deny everything that no role allows, receiving included.
    public static let defaultAccess: [ACL.Kind] = [
        .publishClientSend, .publishClientReceive, .subscribe, .unsubscribe,
    ]

    /// Home and provider ids: one plain topic level; `all` is reserved for the broadcast.
    public static func validate(id: String, kind: String) throws {
        guard Request.isValidReplyTo(id), id.utf8.count <= 48 else {
            throw VGWError(.invalidArgument, "\(kind) id '\(id)' must be 1 to 48 of A-Z a-z 0-9 _ -")
        }
        guard id != FleetTopics.allHomes else {
            throw VGWError(.reserved, "'\(FleetTopics.allHomes)' is reserved for requests to every home")
        }
    }
}

extension ACL.Kind {
    /// The default-access names of subscribe and unsubscribe (no literal/pattern there).
    static let subscribe = ACL.Kind.subscribePattern
    static let unsubscribe = ACL.Kind.unsubscribePattern

    var defaultAccessName: String {
        switch self {
        case .subscribeLiteral, .subscribePattern: "subscribe"
        case .unsubscribeLiteral, .unsubscribePattern: "unsubscribe"
        default: rawValue
        }
    }
}

/// An admin connection to the cloud broker's dynamic security plugin.
public final class CloudAdmin: Sendable {
    static let controlTopic = "$CONTROL/dynamic-security/v1"
    let client: MQTTClient
    let dynsec: DynSecClient
    private let reader: Mutex<Task<Void, Never>?> = Mutex(nil)

    public static func connect(host: String, port: UInt16, username: String, password: String) async throws
        -> CloudAdmin
    {
        let client = try MQTTClient(
            MQTTConfiguration(
                host: host, port: Int(port), clientID: "\(username)-\(try SecureRandom.token(bytes: 6))",
                username: username, password: password, reconnect: false))
        try await client.connect()
        let admin = CloudAdmin(client: client)
        do {
            let code = try await client.subscribe(controlTopic + "/response", qos: .atLeastOnce)
            guard !MQTTClient.isRefusal(code) else {
                throw VGWError(.forbidden, "\(username) may not administer dynamic security (reason \(code))")
            }
        } catch {
            await admin.close()
            throw error
        }
        return admin
    }

    private init(client: MQTTClient) {
        self.client = client
        let dynsec = DynSecClient { payload in
            let code = try await client.publish(topic: CloudAdmin.controlTopic, payload: payload, qos: .atLeastOnce)
            guard MQTTClient.isSuccess(code) else {
                throw VGWError(.forbidden, "the broker refused the dynamic security command (reason \(code))")
            }
        }
        self.dynsec = dynsec
        let task = Task {
            for await message in client.messages where message.topic == CloudAdmin.controlTopic + "/response" {
                dynsec.deliver(message.payload)
            }
        }
        reader.withLock { $0 = task }
    }

    public func close() async {
        await client.disconnect()
        reader.withLock { $0?.cancel() }
    }

    /// Creates (or re-creates with a new password) home `home`'s client and role; returns
    /// the password, which is stored nowhere else.
    public func addHome(_ home: String) async throws -> String {
        try CloudACLs.validate(id: home, kind: "home")
        return try await provision(
            username: CloudACLs.homeUsername(home), clientID: CloudACLs.homeClientID(home),
            role: CloudACLs.homeRole(home), acls: CloudACLs.home(home))
    }

    /// Creates (or re-creates with a new password) provider `provider`'s client and role.
    public func addProvider(_ provider: String) async throws -> String {
        try CloudACLs.validate(id: provider, kind: "provider")
        return try await provision(
            username: CloudACLs.providerUsername(provider), clientID: nil, role: CloudACLs.providerRole(provider),
            acls: CloudACLs.provider(provider))
    }

    /// Makes the default access deny everything (idempotent).
    public func denyByDefault() async throws {
        let acls: [JSONValue] = CloudACLs.defaultAccess.map { kind in
            .object(["acltype": .string(kind.defaultAccessName), "allow": .bool(false)])
        }
        try await dynsec.execute([DynSecCommand("setDefaultACLAccess", ["acls": .array(acls)])])
    }

    /// The client is deleted first and the role is changed ACL by ACL, never deleted:
    /// Mosquitto 2.0 crashes after a held role is deleted (docs/isolation.md).
    private func provision(username: String, clientID: String?, role: String, acls: [ACL]) async throws -> String {
        try await denyByDefault()
        try await dynsec.execute([
            DynSecCommand("deleteClient", ["username": .string(username)], tolerateFailure: true),
            DynSecCommand("createRole", ["rolename": .string(role)], tolerateFailure: true),
        ])
        let current = try await roleACLs(role)
        try await dynsec.execute(DynSecCommands.updateACLs(role: role, from: current, to: acls))
        let password = try SecureRandom.token(bytes: 24)
        var arguments: [String: JSONValue] = [
            "username": .string(username), "password": .string(password),
            "roles": [["rolename": .string(role)]],
        ]
        if let clientID { arguments["clientid"] = .string(clientID) }
        try await dynsec.execute([DynSecCommand("createClient", arguments)])
        return password
    }

    func roleACLs(_ role: String) async throws -> [ACL] {
        let data = try await dynsec.query(DynSecCommand("getRole", ["rolename": .string(role)]))
        return (data["role"]?["acls"]?.arrayValue ?? []).compactMap { value in
            guard let type = value["acltype"]?.stringValue, let kind = ACL.Kind(rawValue: type),
                let topic = value["topic"]?.stringValue
            else { return nil }
            return ACL(kind, topic, allow: value["allow"]?.boolValue ?? false)
        }
    }
}

/// `vgw cloud init`: the files of a cloud broker.
public enum CloudInit {
    public static func configuration(directory: String, port: UInt16, plugin: String) -> String {
        """
        # The cloud broker of a VirtualGateway fleet (docs/fleet.md, deploy/cloud/README.md).
        # Every client authenticates; dynamic security decides what each may do, and its
        # default access denies everything (sending, receiving, subscribing).
        per_listener_settings false
        allow_anonymous false

        listener \(port)
        # For production, use TLS instead (listener 8883 with cafile/certfile/keyfile).

        plugin \(plugin)
        plugin_opt_config_file \(directory)/dynamic-security.json

        persistence true
        persistence_location \(directory)/
        autosave_interval 60

        # Requests are retried by their sender; do not let offline sessions pile them up.
        max_queued_messages 1000
        max_inflight_messages 100

        log_dest file \(directory)/mosquitto.log
        log_type error
        log_type warning
        log_type notice
        connection_messages true

        """
    }

    /// Writes `mosquitto.conf` and `dynamic-security.json` (an admin, default deny) into
    /// `directory`; refuses to overwrite either.
    public static func write(
        directory: String, port: UInt16, admin: String, password: String,
        plugin: String = BrokerConfiguration.debianDynamicSecurityPlugin
    ) async throws {
        let conf = directory + "/mosquitto.conf"
        let dynsec = directory + "/dynamic-security.json"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for path in [conf, dynsec] where FileManager.default.fileExists(atPath: path) {
            throw VGWError(.alreadyExists, "\(path) exists; not overwriting it")
        }
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_ctrl")
        tool.arguments = ["dynsec", "init", dynsec, admin, password]
        tool.standardOutput = FileHandle.nullDevice
        tool.standardError = FileHandle.nullDevice
        try tool.run()
        // Bounded: mosquitto_ctrl only writes a file.
        for _ in 0..<300 where tool.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        if tool.isRunning {
            tool.terminate()
            throw VGWError(.timeout, "mosquitto_ctrl dynsec init did not finish within 30 s")
        }
        guard tool.terminationStatus == 0 else {
            throw VGWError(.broker, "mosquitto_ctrl dynsec init failed with status \(tool.terminationStatus)")
        }
        // mosquitto_ctrl allows receiving and unsubscribing by default: deny them too.
        let data = try Data(contentsOf: URL(fileURLWithPath: dynsec))
        guard var root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VGWError(.config, "\(dynsec) is not a JSON object")
        }
        root["defaultACLAccess"] = [
            "publishClientSend": false, "publishClientReceive": false, "subscribe": false, "unsubscribe": false,
        ]
        let out = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(out, to: dynsec, mode: 0o600)
        try AtomicFile.write(
            Data(configuration(directory: directory, port: port, plugin: plugin).utf8), to: conf, mode: 0o644)
        // Started as root, mosquitto drops to the `mosquitto` user: give it its files.
        if geteuid() == 0, let user = getpwnam("mosquitto") {
            for path in [directory, dynsec, conf] where chown(path, user.pointee.pw_uid, user.pointee.pw_gid) != 0 {
                throw VGWError(.io, "cannot give \(path) to the mosquitto user")
            }
        }
    }
}
