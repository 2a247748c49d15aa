import Foundation
import Store

/// The shapes of results on the wire (documented in docs/protocol.md).
public struct ProviderSummary: Codable, Sendable, Equatable {
    public var provider: String
    public var state: String
    public var createdAt: Date
    public var clients: Int
}

public struct ProviderDetail: Codable, Sendable, Equatable {
    public var provider: String
    public var state: String
    public var createdAt: Date
    public var namespace: String
    public var clients: [String]
    public var bundles: [String]
    public var isolation: String
    public var resources: Resources

    public struct Resources: Codable, Sendable, Equatable {
        /// cgroup v2, cgroup v1 or rlimits: what really limits this VGW's services.
        public var mechanism: String
        public var limits: String
    }
}

/// Shown once: the password exists nowhere else afterwards (the store keeps a hash).
public struct IssuedCredentials: Codable, Sendable, Equatable {
    public var provider: String
    public var name: String
    public var username: String
    public var clientId: String
    public var password: String
    public var host: String
    public var port: UInt16
    public var topicPrefix: String
}

public struct ClientView: Codable, Sendable, Equatable {
    public var provider: String
    public var name: String
    public var username: String
    public var clientId: String
    public var kind: String
    public var createdAt: Date

    public init(_ record: ClientRecord) {
        provider = record.provider
        name = record.name
        username = record.username
        clientId = record.clientID
        kind = record.kind
        createdAt = record.createdAt
    }
}

public struct GatewayStatus: Codable, Sendable, Equatable {
    public struct BrokerAddress: Codable, Sendable, Equatable {
        public var host: String
        public var port: UInt16
    }

    public var home: String
    public var version: String
    public var startedAt: Date
    public var broker: BrokerAddress
    public var providers: Int
    public var clients: Int
}
