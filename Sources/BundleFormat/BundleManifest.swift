import Foundation
import Protocol
import Support

/// The `manifest.json` at the root of a bundle: what the daemon runs and within which limits.
///
/// Manifests come from providers who may be hostile, so decoding is strict: unknown keys,
/// wrong types and out-of-range values are refused with an error naming the field, rather
/// than being ignored or coerced into something the provider did not mean.
public struct BundleManifest: Codable, Sendable, Equatable {
    /// What the supervisor does when the service exits.
    public enum RestartPolicy: String, Codable, Sendable, Equatable {
        case always
        case onFailure = "on-failure"
        case never
    }

    /// Limits applied to the service's processes (by ResourceControl).
    public struct Resources: Codable, Sendable, Equatable {
        public static let defaultMemory = 128 << 20
        public static let defaultCPU = 0.5
        public static let defaultPIDs = 64
        /// Below this a service cannot even start a runtime; such a value is a mistake.
        public static let minimumMemory = 4 << 20
        public static let cpuRange = 0.01...64.0
        public static let pidsRange = 1...4096

        /// Memory limit in bytes.
        public var memory: Int
        /// CPU share in CPUs (0.5 is half of one CPU).
        public var cpu: Double
        /// Maximum number of processes and threads.
        public var pids: Int

        public init(memory: Int = defaultMemory, cpu: Double = defaultCPU, pids: Int = defaultPIDs) {
            self.memory = memory
            self.cpu = cpu
            self.pids = pids
        }

        /// Parses a byte count such as "64M", "1G", "512K" or "1048576" (binary units).
        public static func parseMemory(_ text: String) throws -> Int {
            let invalid = VGWError(
                .invalidBundle, "manifest: field resources.memory must be a byte count such as 64M or 1G")
            var digits = Substring(text)
            var multiplier = 1
            if let last = digits.last, !last.isASCII || !last.isNumber {
                switch last {
                case "K", "k": multiplier = 1 << 10
                case "M", "m": multiplier = 1 << 20
                case "G", "g": multiplier = 1 << 30
                default: throw invalid
                }
                digits = digits.dropLast()
            }
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = Int(digits)
            else { throw invalid }
            let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { throw invalid }
            return bytes
        }
    }

    public static let maxManifestBytes = 64 << 10
    public static let maxDescriptionLength = 200

    public var name: String
    public var version: String
    /// Path of the executable, relative to the bundle root.
    public var command: String
    public var args: [String]
    public var env: [String: String]
    public var restart: RestartPolicy
    public var resources: Resources
    public var description: String?

    /// Builds a manifest, validating every field as `decode` does.
    public init(
        name: String, version: String, command: String, args: [String] = [], env: [String: String] = [:],
        restart: RestartPolicy = .onFailure, resources: Resources = Resources(), description: String? = nil
    ) throws {
        self.name = name
        self.version = version
        self.command = command
        self.args = args
        self.env = env
        self.restart = restart
        self.resources = resources
        self.description = description
        try validate()
    }

    /// Decodes and validates manifest bytes; every error is `.invalidBundle` (or `.tooLarge`)
    /// with a message naming the field.
    public static func decode(_ data: [UInt8]) throws -> BundleManifest {
        guard data.count <= maxManifestBytes else {
            throw VGWError(.tooLarge, "manifest: larger than \(maxManifestBytes) bytes")
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(data))
        } catch {
            throw VGWError.wrap(error, .invalidBundle, "manifest: not valid JSON")
        }
        return try BundleManifest(json: value)
    }

    public init(from decoder: any Decoder) throws {
        self = try BundleManifest(json: try JSONValue(from: decoder))
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name, version, command, args, env, restart, resources, description
    }

    private enum ResourceKeys: String, CaseIterable {
        case memory, cpu, pids
    }

    /// Field-by-field decoding from a loosely parsed JSON value, for precise error messages.
    private init(json: JSONValue) throws {
        guard let object = json.objectValue else { throw Self.invalid("manifest must be a JSON object") }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw Self.invalid("unknown field \(unknown)")
        }
        name = try Self.string(object, "name")
        version = try Self.string(object, "version")
        command = try Self.string(object, "command")
        args = []
        if let value = object["args"] {
            guard let array = value.arrayValue else { throw Self.invalid("field args must be an array of strings") }
            args = try array.map {
                guard let text = $0.stringValue else { throw Self.invalid("field args must be an array of strings") }
                return text
            }
        }
        env = [:]
        if let value = object["env"] {
            guard let dictionary = value.objectValue else {
                throw Self.invalid("field env must be an object of strings")
            }
            env = try dictionary.mapValues {
                guard let text = $0.stringValue else { throw Self.invalid("field env must be an object of strings") }
                return text
            }
        }
        restart = .onFailure
        if let value = object["restart"] {
            guard let text = value.stringValue, let policy = RestartPolicy(rawValue: text) else {
                throw Self.invalid("field restart must be always, on-failure or never")
            }
            restart = policy
        }
        resources = Resources()
        if let value = object["resources"] {
            resources = try Self.resources(value)
        }
        description = nil
        if let value = object["description"] {
            guard let text = value.stringValue else { throw Self.invalid("field description must be a string") }
            description = text
        }
        try validate()
    }

    private static func resources(_ value: JSONValue) throws -> Resources {
        guard let object = value.objectValue else { throw invalid("field resources must be an object") }
        let known = Set(ResourceKeys.allCases.map(\.rawValue))
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw invalid("unknown field resources.\(unknown)")
        }
        var resources = Resources()
        switch object["memory"] {
        case nil: break
        case .string(let text)?: resources.memory = try Resources.parseMemory(text)
        case let value?:
            guard let bytes = value.intValue else {
                throw invalid("field resources.memory must be a byte count such as 64M or 1G")
            }
            resources.memory = bytes
        }
        if let value = object["cpu"] {
            guard let cpu = value.numberValue else { throw invalid("field resources.cpu must be a number") }
            resources.cpu = cpu
        }
        if let value = object["pids"] {
            guard let pids = value.intValue else { throw invalid("field resources.pids must be an integer") }
            resources.pids = pids
        }
        return resources
    }

    private static func string(_ object: [String: JSONValue], _ field: String) throws -> String {
        guard let value = object[field] else { throw invalid("missing field \(field)") }
        guard let text = value.stringValue else { throw invalid("field \(field) must be a string") }
        return text
    }

    private static func invalid(_ message: String) -> VGWError {
        VGWError(.invalidBundle, "manifest: " + message)
    }

    /// Checks the values; shared by the memberwise initializer and decoding.
    private func validate() throws {
        let lower = "abcdefghijklmnopqrstuvwxyz0123456789"
        guard let first = name.first, lower.contains(first), name.count <= 32,
            name.allSatisfy({ lower.contains($0) || $0 == "-" })
        else { throw Self.invalid("field name must match [a-z0-9][a-z0-9-]{0,31}") }

        let versionCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-"
        guard !version.isEmpty, version.count <= 32, version.allSatisfy({ versionCharacters.contains($0) }) else {
            throw Self.invalid("field version must be 1 to 32 characters of [0-9A-Za-z.+-]")
        }

        // Only the normal form is accepted ("bin/run", not "./bin/run"), so that the command names
        // exactly one archive entry.
        guard let parts = try? BundlePath.components(Array(command.utf8), isDirectory: false),
            parts.joined(separator: "/") == command
        else { throw Self.invalid("field command must be a relative path inside the bundle") }

        if args.contains(where: { $0.utf8.contains(0) }) {
            throw Self.invalid("field args must not contain NUL characters")
        }

        let keyHead = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
        for (key, value) in env.sorted(by: { $0.key < $1.key }) {
            guard let head = key.first, keyHead.contains(head),
                key.allSatisfy({ keyHead.contains($0) || ($0.isASCII && $0.isNumber) })
            else { throw Self.invalid("field env has an invalid variable name \(String(reflecting: key))") }
            guard !key.hasPrefix("VGW_") else {
                throw Self.invalid("field env may not set \(key): VGW_ variables are reserved for the daemon")
            }
            guard !value.utf8.contains(0) else { throw Self.invalid("field env.\(key) must not contain NUL") }
        }

        guard resources.memory >= Resources.minimumMemory else {
            throw Self.invalid("field resources.memory must be at least 4M")
        }
        guard resources.cpu.isFinite, Resources.cpuRange.contains(resources.cpu) else {
            throw Self.invalid("field resources.cpu must be between 0.01 and 64")
        }
        guard Resources.pidsRange.contains(resources.pids) else {
            throw Self.invalid("field resources.pids must be between 1 and 4096")
        }
        if let description, description.count > Self.maxDescriptionLength {
            throw Self.invalid("field description must be at most \(Self.maxDescriptionLength) characters")
        }
    }
}
