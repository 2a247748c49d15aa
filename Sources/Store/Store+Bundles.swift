import Foundation
import Support

/// An installed bundle: what was installed and whether it is meant to run. Whether it
/// *is* running is the supervisor's business, not the store's.
public struct BundleRecord: Sendable, Codable, Equatable {
    public var provider: String
    public var name: String
    public var version: String
    /// The manifest as installed, JSON.
    public var manifest: String
    public var archiveSHA256: String
    public var desired: ProviderState
    public var installedAt: Date

    public init(
        provider: String, name: String, version: String, manifest: String, archiveSHA256: String,
        desired: ProviderState, installedAt: Date
    ) {
        self.provider = provider
        self.name = name
        self.version = version
        self.manifest = manifest
        self.archiveSHA256 = archiveSHA256
        self.desired = desired
        self.installedAt = installedAt
    }
}

extension Store {
    /// Installs or replaces a bundle record.
    public func putBundle(_ bundle: BundleRecord) throws {
        try database.transaction { db in
            guard try !db.query("SELECT 1 FROM providers WHERE id = ?", [.text(bundle.provider)]).isEmpty else {
                throw VGWError(.notFound, "provider \(bundle.provider) not found")
            }
            try db.execute(
                """
                INSERT INTO bundles (provider, name, version, manifest, archive_sha256, desired, installed_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (provider, name) DO UPDATE SET version = excluded.version,
                    manifest = excluded.manifest, archive_sha256 = excluded.archive_sha256,
                    desired = excluded.desired, installed_at = excluded.installed_at
                """,
                [
                    .text(bundle.provider), .text(bundle.name), .text(bundle.version), .text(bundle.manifest),
                    .text(bundle.archiveSHA256), .text(bundle.desired.rawValue),
                    .real(bundle.installedAt.timeIntervalSince1970),
                ])
        }
    }

    public func bundle(provider: String, name: String) throws -> BundleRecord? {
        try database.withConnection { db in
            try db.query(
                "SELECT provider, name, version, manifest, archive_sha256, desired, installed_at FROM bundles WHERE provider = ? AND name = ?",
                [.text(provider), .text(name)]
            ).first.map(Self.bundleRecord)
        }
    }

    /// The bundles of one provider, or of all (nil), sorted by provider then name.
    public func bundles(provider: String?) throws -> [BundleRecord] {
        try database.withConnection { db in
            let columns = "provider, name, version, manifest, archive_sha256, desired, installed_at"
            let rows =
                try provider.map {
                    try db.query(
                        "SELECT \(columns) FROM bundles WHERE provider = ? ORDER BY name", [.text($0)])
                }
                ?? db.query("SELECT \(columns) FROM bundles ORDER BY provider, name")
            return try rows.map(Self.bundleRecord)
        }
    }

    public func setBundleDesired(provider: String, name: String, _ desired: ProviderState) throws {
        try database.withConnection { db in
            let changed = try db.execute(
                "UPDATE bundles SET desired = ? WHERE provider = ? AND name = ?",
                [.text(desired.rawValue), .text(provider), .text(name)])
            guard changed == 1 else { throw VGWError(.notFound, "bundle \(name) of provider \(provider) not found") }
        }
    }

    public func deleteBundle(provider: String, name: String) throws {
        try database.withConnection { db in
            let changed = try db.execute(
                "DELETE FROM bundles WHERE provider = ? AND name = ?", [.text(provider), .text(name)])
            guard changed == 1 else { throw VGWError(.notFound, "bundle \(name) of provider \(provider) not found") }
        }
    }

    /// Adds a client, replacing one of the same provider and name (a bundle's identity
    /// gets a fresh password at every start).
    public func replaceClient(_ client: ClientRecord) throws {
        try transaction {
            if try self.client(provider: client.provider, name: client.name) != nil {
                _ = try removeClient(provider: client.provider, name: client.name)
            }
            try addClient(client)
        }
    }

    private static func bundleRecord(_ row: Row) throws -> BundleRecord {
        guard let desired = ProviderState(rawValue: try row.string(5)) else {
            throw VGWError(.storage, "bundle row has an unknown desired state")
        }
        return BundleRecord(
            provider: try row.string(0), name: try row.string(1), version: try row.string(2),
            manifest: try row.string(3), archiveSHA256: try row.string(4), desired: desired,
            installedAt: Date(timeIntervalSince1970: try row.double(6)))
    }
}
