import CSQLite
import Foundation
import Support
import Synchronization

/// `SQLITE_TRANSIENT` is a C macro Swift cannot import: it tells SQLite to copy bound
/// text and blobs, because Swift's buffers only live for the duration of the bind call.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One value bound to or read from SQLite, typed the way SQLite stores it.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLValue: ExpressibleByNilLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByStringLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .real(value) }
    public init(stringLiteral value: String) { self = .text(value) }

    public init(_ value: Int) { self = .integer(Int64(value)) }
    public init(_ value: Data) { self = .blob([UInt8](value)) }
    /// Optional text maps to NULL, so callers need not branch on `nil` themselves.
    public init(_ value: String?) { self = value.map(SQLValue.text) ?? .null }
}

/// The SQLite failure underneath a `VGWError(.storage)`: the extended result code
/// lets callers tell a constraint violation from real trouble.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String

    /// True for UNIQUE, PRIMARY KEY, CHECK, NOT NULL and FOREIGN KEY violations.
    public var isConstraintViolation: Bool { code & 0xFF == SQLITE_CONSTRAINT }

    public var description: String { "sqlite error \(code): \(message)" }
}

/// One result row, copied out of SQLite so it stays valid after the statement moves on.
public struct Row: Sendable, Equatable {
    public let values: [SQLValue]

    /// Reads a column that must hold text; a type mismatch means the schema and the
    /// code disagree, which is reported as a storage error rather than trapping.
    public func string(_ index: Int) throws -> String {
        guard case .text(let value) = try self[checked: index] else { throw mismatch(index, "text") }
        return value
    }

    public func optionalString(_ index: Int) throws -> String? {
        if case .null = try self[checked: index] { return nil }
        return try string(index)
    }

    public func int64(_ index: Int) throws -> Int64 {
        guard case .integer(let value) = try self[checked: index] else {
            throw mismatch(index, "integer")
        }
        return value
    }

    public func int(_ index: Int) throws -> Int { Int(try int64(index)) }

    /// SQLite hands back a whole-valued REAL as INTEGER when its column has no type
    /// affinity (for example in `SELECT 1.0`), so integers are accepted here too.
    public func double(_ index: Int) throws -> Double {
        switch try self[checked: index] {
        case .real(let value): return value
        case .integer(let value): return Double(value)
        default: throw mismatch(index, "real")
        }
    }

    public func bytes(_ index: Int) throws -> [UInt8] {
        guard case .blob(let value) = try self[checked: index] else { throw mismatch(index, "blob") }
        return value
    }

    /// A date stored as seconds since 1970, the convention `datetime(x, 'unixepoch')` reads.
    public func date(_ index: Int) throws -> Date { Date(timeIntervalSince1970: try double(index)) }

    private subscript(checked index: Int) -> SQLValue {
        get throws {
            guard values.indices.contains(index) else {
                throw VGWError(.storage, "column \(index) out of range (row has \(values.count))")
            }
            return values[index]
        }
    }

    private func mismatch(_ index: Int, _ expected: String) -> VGWError {
        VGWError(.storage, "column \(index) holds \(values[index]), expected \(expected)")
    }
}

/// An open SQLite connection. Not `Sendable`: only `Database` hands it out, one
/// thread at a time, and only for the duration of a closure.
public final class Connection {
    private let handle: OpaquePointer
    /// Prepared statements by SQL text; the gateway runs the same few queries over and
    /// over, so preparing each once saves parsing on every request. The cache is never
    /// trimmed, so SQL must be constant text with `?` placeholders, not built from data.
    private var statements: [String: Statement] = [:]
    /// How many transactions are open, so nested ones become savepoints.
    private var transactionDepth = 0

    fileprivate init(path: String) throws {
        var handle: OpaquePointer?
        let flags =
            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard let handle else {
            throw VGWError(.storage, "cannot open database at \(path): out of memory")
        }
        // SQLite allocates a handle even when opening fails; it must be closed either way.
        if let error = Connection.error(status, handle, "cannot open database at \(path)") {
            sqlite3_close_v2(handle)
            throw error
        }
        self.handle = handle
        // Waits for another process's write lock instead of failing at once with SQLITE_BUSY.
        try check(sqlite3_busy_timeout(handle, 5_000), "cannot set busy timeout")
    }

    deinit {
        // Statements must go before the connection, or close_v2 leaves it a zombie.
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// The one place SQLite result codes become errors: nil for success codes.
    private static func error(
        _ status: Int32, _ handle: OpaquePointer, _ context: @autoclosure () -> String
    )
        -> VGWError?
    {
        switch status {
        case SQLITE_OK, SQLITE_ROW, SQLITE_DONE: return nil
        default:
            let error = SQLiteError(code: status, message: String(cString: sqlite3_errmsg(handle)))
            return VGWError(.storage, "\(context()): \(error.message)", cause: error)
        }
    }

    fileprivate func check(_ status: Int32, _ context: @autoclosure () -> String) throws {
        if let error = Connection.error(status, handle, context()) { throw error }
    }

    /// Runs one statement and discards any rows; returns how many rows it changed.
    @discardableResult
    public func execute(_ sql: String, _ bindings: [SQLValue] = []) throws -> Int {
        try withStatement(sql, bindings) { statement in
            while try statement.step() {}
        }
        return Int(sqlite3_changes(handle))
    }

    /// Runs one statement and returns all its rows.
    public func query(_ sql: String, _ bindings: [SQLValue] = []) throws -> [Row] {
        try withStatement(sql, bindings) { statement in
            var rows: [Row] = []
            while try statement.step() {
                rows.append(statement.row())
            }
            return rows
        }
    }

    /// Runs several `;`-separated statements without bindings (schema scripts).
    public func executeScript(_ sql: String) throws {
        try check(sqlite3_exec(handle, sql, nil, nil, nil), "cannot run script")
    }

    /// Runs `body` atomically. The outermost level takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers wait on `busy_timeout` instead of
    /// failing half-way with SQLITE_BUSY; nested levels are savepoints, so an inner
    /// failure that the caller catches undoes only the inner work.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        let savepoint = "vgw_\(transactionDepth)"
        try execute(transactionDepth == 0 ? "BEGIN IMMEDIATE" : "SAVEPOINT \(savepoint)")
        transactionDepth += 1
        defer { transactionDepth -= 1 }
        do {
            let result = try body()
            try execute(transactionDepth == 1 ? "COMMIT" : "RELEASE \(savepoint)")
            return result
        } catch {
            // Also reached when COMMIT itself fails, which must not leave the connection
            // stuck inside a transaction. A failed rollback is not reported: the error
            // that caused it is the one worth seeing.
            if transactionDepth == 1 {
                _ = try? execute("ROLLBACK")
            } else {
                _ = try? execute("ROLLBACK TO \(savepoint)")
                _ = try? execute("RELEASE \(savepoint)")
            }
            throw error
        }
    }

    /// The schema version, kept by SQLite in the file header.
    public func userVersion() throws -> Int {
        guard let row = try query("PRAGMA user_version").first else {
            throw VGWError(.storage, "cannot read schema version")
        }
        return try row.int(0)
    }

    /// Borrows the cached statement for `sql`, bound, and resets it afterwards so it
    /// releases its read snapshot and bound values even when `body` throws.
    private func withStatement<T>(
        _ sql: String, _ bindings: [SQLValue], _ body: (Statement) throws -> T
    ) throws -> T {
        let statement: Statement
        if let cached = statements[sql] {
            statement = cached
        } else {
            statement = try Statement(connection: self, handle: handle, sql: sql)
            statements[sql] = statement
        }
        defer { statement.reset() }
        try statement.bind(bindings)
        return try body(statement)
    }

    /// A prepared statement; finalized when the last reference goes.
    fileprivate final class Statement {
        private let handle: OpaquePointer
        private let sql: String
        // Unowned: the connection owns its statements and outlives them.
        private unowned let connection: Connection

        init(connection: Connection, handle database: OpaquePointer, sql: String) throws {
            var handle: OpaquePointer?
            try connection.check(
                sqlite3_prepare_v2(database, sql, -1, &handle, nil), "cannot prepare \(sql)")
            // Empty or comment-only SQL prepares to no statement at all.
            guard let handle else { throw VGWError(.storage, "no statement in \(sql)") }
            self.handle = handle
            self.sql = sql
            self.connection = connection
        }

        deinit { sqlite3_finalize(handle) }

        func bind(_ values: [SQLValue]) throws {
            let expected = Int(sqlite3_bind_parameter_count(handle))
            guard values.count == expected else {
                throw VGWError(.storage, "\(sql) takes \(expected) values, got \(values.count)")
            }
            for (offset, value) in values.enumerated() {
                let index = Int32(offset + 1)
                let status: Int32
                switch value {
                case .null: status = sqlite3_bind_null(handle, index)
                case .integer(let value): status = sqlite3_bind_int64(handle, index, value)
                case .real(let value): status = sqlite3_bind_double(handle, index, value)
                case .text(let value):
                    // Explicit length so text with NUL characters survives whole.
                    var value = value
                    status = value.withUTF8 { utf8 in
                        guard let base = utf8.baseAddress else {
                            return sqlite3_bind_text(handle, index, "", 0, sqliteTransient)
                        }
                        return base.withMemoryRebound(to: CChar.self, capacity: utf8.count) { chars in
                            sqlite3_bind_text64(
                                handle, index, chars, UInt64(utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
                        }
                    }
                case .blob(let value):
                    // A zero-length blob needs a non-NULL pointer, or SQLite stores NULL.
                    status = value.withUnsafeBytes { bytes in
                        if bytes.isEmpty { return sqlite3_bind_zeroblob(handle, index, 0) }
                        return sqlite3_bind_blob64(
                            handle, index, bytes.baseAddress, UInt64(bytes.count), sqliteTransient)
                    }
                }
                try connection.check(status, "cannot bind value \(index) of \(sql)")
            }
        }

        /// Advances to the next row; false when the statement is done.
        func step() throws -> Bool {
            let status = sqlite3_step(handle)
            try connection.check(status, "cannot run \(sql)")
            return status == SQLITE_ROW
        }

        func row() -> Row {
            Row(values: (0..<sqlite3_column_count(handle)).map(column))
        }

        private func column(_ index: Int32) -> SQLValue {
            switch sqlite3_column_type(handle, index) {
            case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, index))
            case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, index))
            case SQLITE_TEXT:
                // Length first: the text may hold NUL characters that cString would cut at.
                let count = Int(sqlite3_column_bytes(handle, index))
                guard let text = sqlite3_column_text(handle, index) else { return .text("") }
                return .text(
                    String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
            case SQLITE_BLOB:
                let count = Int(sqlite3_column_bytes(handle, index))
                guard let bytes = sqlite3_column_blob(handle, index) else { return .blob([]) }
                return .blob([UInt8](UnsafeRawBufferPointer(start: bytes, count: count)))
            default: return .null
            }
        }

        /// Reset errors repeat the step error already reported, so they are not checked again.
        func reset() {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
    }
}

/// A SQLite database file shared by every task of the process.
///
/// One connection behind a `Mutex`: the gateway's writes are small and SQLite
/// serializes writers anyway, so a pool would add complexity without throughput.
/// Access is reentrant on the same thread, so a caller can wrap several `Store`
/// calls in one `transaction` without deadlocking on the lock it already holds.
public final class Database: Sendable {
    public let path: String
    /// Only touched while `lock` is held. `Mutex<Connection>` cannot express this:
    /// handing the guarded value to a caller's closure ties it to the caller's region,
    /// which strict concurrency rejects, so the lock guards the connection from outside.
    private nonisolated(unsafe) let connection: Connection
    private let lock = Mutex(())
    /// Names the thread-local slot where a thread holding the lock parks the connection.
    private let threadKey: String

    /// Opens (creating if needed) the file at `path`, whose directory must exist.
    public init(path: String) throws {
        let connection = try Connection(path: path)
        // The first statement reads the header, so a file that is not a database fails here.
        do {
            try connection.execute("PRAGMA journal_mode=WAL")
            try connection.execute("PRAGMA synchronous=NORMAL")
            try connection.execute("PRAGMA foreign_keys=ON")
        } catch let error as VGWError {
            throw VGWError(
                .storage, "cannot open database at \(path): \(error.message)", cause: error.cause)
        }
        self.path = path
        self.connection = connection
        self.threadKey = "vgw.database.\(UUID().uuidString)"
    }

    /// Runs `body` with exclusive use of the connection.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        let slots = Thread.current.threadDictionary
        if let held = slots[threadKey] as? Connection {
            return try body(held)
        }
        var result: Result<T, any Error>?
        lock.withLock { _ in
            slots[threadKey] = connection
            defer { slots[threadKey] = nil }
            result = Result { try body(connection) }
        }
        guard let result else { throw VGWError(.internalError, "database closure did not run") }
        return try result.get()
    }

    /// Runs `body` in a transaction: committed if it returns, rolled back if it throws.
    public func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        try withConnection { connection in try connection.transaction { try body(connection) } }
    }

    /// Brings the schema up to `migrations.count`, applying each script not yet applied,
    /// in order, each in its own transaction together with the version bump.
    ///
    /// The version is re-read inside the write lock, so two processes opening the same
    /// file at once cannot both apply a script.
    public func migrate(_ migrations: [String]) throws {
        try withConnection { connection in
            while true {
                let done = try connection.transaction { () throws -> Bool in
                    let version = try connection.userVersion()
                    guard version <= migrations.count else {
                        throw VGWError(
                            .storage,
                            "database \(path) has schema version \(version), newer than the \(migrations.count) this build knows"
                        )
                    }
                    guard version < migrations.count else { return true }
                    do {
                        try connection.executeScript(migrations[version])
                    } catch let error as VGWError {
                        throw VGWError(
                            .storage, "migration \(version + 1) failed: \(error.message)", cause: error.cause)
                    }
                    // PRAGMA takes no bound values; the version is an integer we computed.
                    try connection.execute("PRAGMA user_version = \(version + 1)")
                    return false
                }
                if done { return }
            }
        }
    }
}
