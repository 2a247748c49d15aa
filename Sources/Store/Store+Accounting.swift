import Foundation
import Protocol
import Support

/// Something that happened to a provider, worth billing or auditing: recorded by the
/// provider itself (`acct.notify`) or by the daemon.
public struct AccountingEvent: Sendable, Codable, Equatable {
    public var id: Int
    public var provider: String
    public var bundle: String?
    public var kind: String
    /// A JSON object, as given.
    public var detail: JSONValue
    public var at: Date

    public init(id: Int, provider: String, bundle: String?, kind: String, detail: JSONValue, at: Date) {
        self.id = id
        self.provider = provider
        self.bundle = bundle
        self.kind = kind
        self.detail = detail
        self.at = at
    }
}

/// One period during which a bundle's service was running; `endedAt` is nil while it runs.
public struct ServiceRun: Sendable, Codable, Equatable {
    public var id: Int
    public var provider: String
    public var bundle: String
    public var startedAt: Date
    public var endedAt: Date?
    /// Why the run ended (the service state it went to and its exit), nil while it runs.
    public var exit: String?

    public init(id: Int, provider: String, bundle: String, startedAt: Date, endedAt: Date?, exit: String?) {
        self.id = id
        self.provider = provider
        self.bundle = bundle
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.exit = exit
    }

    /// Seconds of this run inside `[from, to]`; an open run counts up to `now`.
    public func seconds(from: Date?, to: Date, now: Date) -> Double {
        let end = min(endedAt ?? now, to)
        let start = max(startedAt, from ?? startedAt)
        return max(0, end.timeIntervalSince(start))
    }
}

extension Store {
    // MARK: Events

    /// Records an event; `detail` is stored as JSON text.
    @discardableResult
    public func addEvent(provider: String, bundle: String?, kind: String, detail: JSONValue, at: Date = Date()) throws
        -> AccountingEvent
    {
        let text = String(decoding: try JSONCoding.encoder.encode(detail), as: UTF8.self)
        return try database.transaction { db in
            guard try !db.query("SELECT 1 FROM providers WHERE id = ?", [.text(provider)]).isEmpty else {
                throw VGWError(.notFound, "provider \(provider) not found")
            }
            try db.execute(
                "INSERT INTO events (provider, bundle, kind, detail, at) VALUES (?, ?, ?, ?, ?)",
                [.text(provider), SQLValue(bundle), .text(kind), .text(text), .real(at.timeIntervalSince1970)])
            let id = try db.query("SELECT last_insert_rowid()")[0].int(0)
            return AccountingEvent(
                id: id, provider: provider, bundle: bundle, kind: kind, detail: detail,
                at: Date(timeIntervalSince1970: at.timeIntervalSince1970))
        }
    }

    /// A provider's events with `from <= at < to` (either bound may be left out), optionally
    /// of one bundle only, oldest first.
    public func events(provider: String, bundle: String? = nil, from: Date? = nil, to: Date? = nil) throws
        -> [AccountingEvent]
    {
        try database.withConnection { db in
            try db.query(
                """
                SELECT id, provider, bundle, kind, detail, at FROM events
                WHERE provider = ?1 AND (?2 IS NULL OR bundle = ?2) AND (?3 IS NULL OR at >= ?3)
                    AND (?4 IS NULL OR at < ?4)
                ORDER BY at, id
                """,
                [.text(provider), SQLValue(bundle), Self.seconds(from), Self.seconds(to)]
            ).map(Self.eventRecord)
        }
    }

    // MARK: Service runs

    /// Opens a run of a service that just went to `running`. A run of the same bundle that
    /// is still open (a status repeated) is returned as is: a service runs once at a time.
    @discardableResult
    public func openRun(provider: String, bundle: String, at: Date = Date()) throws -> ServiceRun {
        try database.transaction { db in
            if let open = try db.query(
                "SELECT \(Self.runColumns) FROM service_runs WHERE provider = ? AND bundle = ? AND ended_at IS NULL",
                [.text(provider), .text(bundle)]
            ).first {
                return try Self.runRecord(open)
            }
            try db.execute(
                "INSERT INTO service_runs (provider, bundle, started_at) VALUES (?, ?, ?)",
                [.text(provider), .text(bundle), .real(at.timeIntervalSince1970)])
            let id = try db.query("SELECT last_insert_rowid()")[0].int(0)
            return ServiceRun(
                id: id, provider: provider, bundle: bundle,
                startedAt: Date(timeIntervalSince1970: at.timeIntervalSince1970), endedAt: nil, exit: nil)
        }
    }

    /// Closes the open run of a service, if there is one (a service that never reached
    /// `running` has none). `at` earlier than the start (clock steps) is clamped to it.
    @discardableResult
    public func closeRun(provider: String, bundle: String, at: Date = Date(), exit: String) throws -> ServiceRun? {
        try database.transaction { db in
            guard
                let row = try db.query(
                    "SELECT \(Self.runColumns) FROM service_runs WHERE provider = ? AND bundle = ? AND ended_at IS NULL",
                    [.text(provider), .text(bundle)]
                ).first
            else { return nil }
            var run = try Self.runRecord(row)
            let end = max(at, run.startedAt)
            try db.execute(
                "UPDATE service_runs SET ended_at = ?, exit = ? WHERE id = ?",
                [.real(end.timeIntervalSince1970), .text(exit), SQLValue(run.id)])
            run.endedAt = Date(timeIntervalSince1970: end.timeIntervalSince1970)
            run.exit = exit
            return run
        }
    }

    /// Closes every open run (the daemon that opened them is gone); returns how many.
    @discardableResult
    public func closeOpenRuns(at: Date, exit: String) throws -> Int {
        try database.withConnection { db in
            try db.execute(
                "UPDATE service_runs SET ended_at = MAX(?, started_at), exit = ? WHERE ended_at IS NULL",
                [.real(at.timeIntervalSince1970), .text(exit)])
        }
    }

    /// A provider's runs that overlap `[from, to)` (an open run overlaps every range after
    /// its start), optionally of one bundle only, oldest first.
    public func runs(provider: String, bundle: String? = nil, from: Date? = nil, to: Date? = nil) throws -> [ServiceRun]
    {
        try database.withConnection { db in
            try db.query(
                """
                SELECT \(Self.runColumns) FROM service_runs
                WHERE provider = ?1 AND (?2 IS NULL OR bundle = ?2) AND (?4 IS NULL OR started_at < ?4)
                    AND (?3 IS NULL OR ended_at IS NULL OR ended_at > ?3)
                ORDER BY started_at, id
                """,
                [.text(provider), SQLValue(bundle), Self.seconds(from), Self.seconds(to)]
            ).map(Self.runRecord)
        }
    }

    // MARK: Row mapping

    private static let runColumns = "id, provider, bundle, started_at, ended_at, exit"

    private static func seconds(_ date: Date?) -> SQLValue {
        date.map { .real($0.timeIntervalSince1970) } ?? .null
    }

    private static func eventRecord(_ row: Row) throws -> AccountingEvent {
        let detail = try JSONCoding.decoder.decode(JSONValue.self, from: Data(try row.string(4).utf8))
        return AccountingEvent(
            id: try row.int(0), provider: try row.string(1), bundle: try row.optionalString(2), kind: try row.string(3),
            detail: detail, at: try row.date(5))
    }

    private static func runRecord(_ row: Row) throws -> ServiceRun {
        let ended: Date? = row.values[4] == .null ? nil : try row.date(4)
        return ServiceRun(
            id: try row.int(0), provider: try row.string(1), bundle: try row.string(2), startedAt: try row.date(3),
            endedAt: ended, exit: try row.optionalString(5))
    }
}
