import Foundation
import Support

/// Whether a provider's process should be running; kept so a restarted daemon
/// brings back what was running before.
public enum ProviderState: String, Sendable, Codable, CaseIterable {
    case running, stopped
}

public struct ProviderRecord: Sendable, Codable, Equatable {
    public var id: String
    public var state: ProviderState
    public var createdAt: Date

    public init(id: String, state: ProviderState, createdAt: Date) {
        self.id = id
        self.state = state
        self.createdAt = createdAt
    }
}

/// A password as the broker checks it: PBKDF2 output and salt, both base64.
public struct StoredPassword: Sendable, Codable, Equatable {
    public var hash: String
    public var salt: String
    public var iterations: Int

    public init(hash: String, salt: String, iterations: Int) {
        self.hash = hash
        self.salt = salt
        self.iterations = iterations
    }
}

/// An MQTT login belonging to a provider.
///
/// `createdAt` is stored as seconds since 1970 in a Double, so a date read back can
/// differ from the one written by a rounding step unless it is whole seconds.
public struct ClientRecord: Sendable, Codable, Equatable {
    public var provider: String
    public var name: String
    public var username: String
    public var clientID: String
    public var passwordHash: StoredPassword
    public var kind: String
    public var createdAt: Date

    public init(
        provider: String, name: String, username: String, clientID: String,
        passwordHash: StoredPassword,
        kind: String = "device", createdAt: Date = Date()
    ) {
        self.provider = provider
        self.name = name
        self.username = username
        self.clientID = clientID
        self.passwordHash = passwordHash
        self.kind = kind
        self.createdAt = createdAt
    }
}

/// The gateway's source of truth: providers, their clients and the daemon's settings.
///
/// Every method is atomic on its own; `transaction` groups several into one.
public final class Store: Sendable {
    /// The schema, one script per version. Append new scripts (grants, bundles,
    /// accounting) to the end; never edit one that has shipped, since databases
    /// in the field have already applied it.
    public static let migrations: [String] = [
        """
        CREATE TABLE providers (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL CHECK (state IN ('running', 'stopped')),
            created_at REAL NOT NULL
        );
        CREATE TABLE clients (
            provider TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            username TEXT NOT NULL UNIQUE,
            client_id TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            password_salt TEXT NOT NULL,
            password_iterations INTEGER NOT NULL,
            kind TEXT NOT NULL DEFAULT 'device',
            created_at REAL NOT NULL,
            PRIMARY KEY (provider, name)
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
        // v2: installed bundles and whether each is meant to run.
        """
        CREATE TABLE bundles (
            provider TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            manifest TEXT NOT NULL,
            archive_sha256 TEXT NOT NULL,
            desired TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
            installed_at REAL NOT NULL,
            PRIMARY KEY (provider, name)
        );
        """,
        // v3: grants between providers (owner may be `core`, grantee may be `*`, so the
        // references are kept by the code, not by foreign keys).
        """
        CREATE TABLE grants (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            grantee TEXT NOT NULL,
            filter TEXT NOT NULL,
            access TEXT NOT NULL CHECK (access IN ('read', 'write', 'readwrite')),
            created_at REAL NOT NULL,
            UNIQUE (owner, grantee, filter, access)
        );
        CREATE INDEX grants_grantee ON grants (grantee);
        """,
        // v4: nonces of signed remote requests, kept until their request expires.
        """
        CREATE TABLE nonces (
            nonce TEXT PRIMARY KEY,
            expires_at INTEGER NOT NULL,
            response BLOB
        );
        CREATE INDEX nonces_expiry ON nonces (expires_at);
        """,
        // v5: accounting. Events a provider (or the daemon) records, and the periods each
        // bundle's service ran. Both go with their provider (a re-created provider of the
        // same id must not read its predecessor's records).
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            provider TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
            bundle TEXT,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            at REAL NOT NULL
        );
        CREATE INDEX events_provider_at ON events (provider, at);
        CREATE TABLE service_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            provider TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
            bundle TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            exit TEXT,
            CHECK (ended_at IS NULL OR ended_at >= started_at)
        );
        CREATE INDEX service_runs_provider_started ON service_runs (provider, started_at);
        CREATE INDEX service_runs_open ON service_runs (provider, bundle) WHERE ended_at IS NULL;
        """,
    ]

    public let database: Database

    /// Opens the database at `path` and brings its schema up to date.
    public init(path: String) throws {
        database = try Database(path: path)
        try database.migrate(Store.migrations)
    }

    /// Runs `body` atomically: the store calls it makes commit together or not at all.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try database.transaction { _ in try body() }
    }

    // MARK: Providers

    @discardableResult
    public func createProvider(_ id: String, state: ProviderState = .running) throws -> ProviderRecord {
        try database.transaction { db in
            guard try db.query("SELECT 1 FROM providers WHERE id = ?", [.text(id)]).isEmpty else {
                throw VGWError(.alreadyExists, "provider \(id) already exists")
            }
            // The record is built from the very Double stored, so it equals what
            // `provider(_:)` reads back (a Date round-tripped through 1970 may not).
            let seconds = Date().timeIntervalSince1970
            try db.execute(
                "INSERT INTO providers (id, state, created_at) VALUES (?, ?, ?)",
                [.text(id), .text(state.rawValue), .real(seconds)])
            return ProviderRecord(id: id, state: state, createdAt: Date(timeIntervalSince1970: seconds))
        }
    }

    public func provider(_ id: String) throws -> ProviderRecord? {
        try database.withConnection { db in
            try db.query("SELECT \(Store.providerColumns) FROM providers WHERE id = ?", [.text(id)])
                .first.map(Store.providerRecord)
        }
    }

    public func providers() throws -> [ProviderRecord] {
        try database.withConnection { db in
            try db.query("SELECT \(Store.providerColumns) FROM providers ORDER BY id").map(
                Store.providerRecord)
        }
    }

    public func setProviderState(_ id: String, _ state: ProviderState) throws {
        try database.withConnection { db in
            let changed = try db.execute(
                "UPDATE providers SET state = ? WHERE id = ?", [.text(state.rawValue), .text(id)])
            guard changed > 0 else { throw VGWError(.notFound, "provider \(id) not found") }
        }
    }

    /// Deletes a provider and, by cascade, its clients; returns those clients so the
    /// caller can disconnect them from the broker.
    @discardableResult
    public func deleteProvider(_ id: String) throws -> [ClientRecord] {
        try database.transaction { db in
            let clients = try Store.clients(db, provider: id)
            guard try db.execute("DELETE FROM providers WHERE id = ?", [.text(id)]) > 0 else {
                throw VGWError(.notFound, "provider \(id) not found")
            }
            return clients
        }
    }

    // MARK: Clients

    /// Adds a client; the checks come first so the error names the clash instead of
    /// reporting a bare constraint failure.
    public func addClient(_ client: ClientRecord) throws {
        try database.transaction { db in
            guard try !db.query("SELECT 1 FROM providers WHERE id = ?", [.text(client.provider)]).isEmpty
            else {
                throw VGWError(.notFound, "provider \(client.provider) not found")
            }
            let clashes: [(sql: String, bindings: [SQLValue], message: String)] = [
                (
                    "SELECT 1 FROM clients WHERE provider = ? AND name = ?",
                    [.text(client.provider), .text(client.name)],
                    "client \(client.name) of provider \(client.provider) already exists"
                ),
                (
                    "SELECT 1 FROM clients WHERE username = ?", [.text(client.username)],
                    "username \(client.username) already exists"
                ),
                (
                    "SELECT 1 FROM clients WHERE client_id = ?", [.text(client.clientID)],
                    "client id \(client.clientID) already exists"
                ),
            ]
            for clash in clashes where try !db.query(clash.sql, clash.bindings).isEmpty {
                throw VGWError(.alreadyExists, clash.message)
            }
            try db.execute(
                """
                INSERT INTO clients (provider, name, username, client_id, password_hash, password_salt,
                    password_iterations, kind, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(client.provider), .text(client.name), .text(client.username),
                    .text(client.clientID),
                    .text(client.passwordHash.hash), .text(client.passwordHash.salt),
                    SQLValue(client.passwordHash.iterations), .text(client.kind),
                    .real(client.createdAt.timeIntervalSince1970),
                ])
        }
    }

    @discardableResult
    public func removeClient(provider: String, name: String) throws -> ClientRecord {
        try database.transaction { db in
            guard let client = try Store.client(db, provider: provider, name: name) else {
                throw VGWError(.notFound, "client \(name) of provider \(provider) not found")
            }
            try db.execute(
                "DELETE FROM clients WHERE provider = ? AND name = ?", [.text(provider), .text(name)])
            return client
        }
    }

    public func client(provider: String, name: String) throws -> ClientRecord? {
        try database.withConnection { db in try Store.client(db, provider: provider, name: name) }
    }

    /// The clients of one provider, or of all when `provider` is nil, sorted by provider then name.
    /// How many clients each provider has, in one query (`vgw.list` at 1,000 providers).
    public func clientCounts() throws -> [String: Int] {
        try database.withConnection { db in
            var counts: [String: Int] = [:]
            for row in try db.query("SELECT provider, COUNT(*) FROM clients GROUP BY provider") {
                counts[try row.string(0)] = try row.int(1)
            }
            return counts
        }
    }

    public func clients(provider: String?) throws -> [ClientRecord] {
        try database.withConnection { db in try Store.clients(db, provider: provider) }
    }

    // MARK: Settings

    public func setting(_ key: String) throws -> String? {
        try database.withConnection { db in
            try db.query("SELECT value FROM settings WHERE key = ?", [.text(key)]).first?.string(0)
        }
    }

    /// Sets a setting, or deletes it when `value` is nil.
    public func setSetting(_ key: String, _ value: String?) throws {
        try database.withConnection { (db: Connection) throws -> Void in
            if let value {
                try db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [.text(key), .text(value)])
            } else {
                try db.execute("DELETE FROM settings WHERE key = ?", [.text(key)])
            }
        }
    }

    // MARK: Row mapping

    private static let providerColumns = "id, state, created_at"

    private static func providerRecord(_ row: Row) throws -> ProviderRecord {
        let stateName = try row.string(1)
        guard let state = ProviderState(rawValue: stateName) else {
            throw VGWError(.storage, "provider \(try row.string(0)) has unknown state \(stateName)")
        }
        return ProviderRecord(id: try row.string(0), state: state, createdAt: try row.date(2))
    }

    private static let clientColumns = """
        provider, name, username, client_id, password_hash, password_salt, password_iterations, kind, created_at
        """

    private static func clientRecord(_ row: Row) throws -> ClientRecord {
        ClientRecord(
            provider: try row.string(0), name: try row.string(1), username: try row.string(2),
            clientID: try row.string(3),
            passwordHash: StoredPassword(
                hash: try row.string(4), salt: try row.string(5), iterations: try row.int(6)),
            kind: try row.string(7), createdAt: try row.date(8))
    }

    private static func client(_ db: Connection, provider: String, name: String) throws
        -> ClientRecord?
    {
        try db.query(
            "SELECT \(clientColumns) FROM clients WHERE provider = ? AND name = ?",
            [.text(provider), .text(name)]
        ).first.map(clientRecord)
    }

    private static func clients(_ db: Connection, provider: String?) throws -> [ClientRecord] {
        // `? IS NULL` lets one cached statement serve both the filtered and the full listing.
        try db.query(
            "SELECT \(clientColumns) FROM clients WHERE ?1 IS NULL OR provider = ?1 ORDER BY provider, name",
            [SQLValue(provider)]
        ).map(clientRecord)
    }
}
