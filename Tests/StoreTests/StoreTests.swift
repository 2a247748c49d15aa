import Foundation
import Support
import Testing

@testable import Store

/// A fresh directory per test, removed when the test ends.
final class TempDir {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgw-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    var databasePath: String { url.appendingPathComponent("vgw.db").path }
}

private func password(_ seed: String) -> StoredPassword {
    StoredPassword(
        hash: Data("hash-\(seed)".utf8).base64EncodedString(), salt: "c2FsdA==", iterations: 100_000)
}

private func client(
    _ provider: String, _ name: String, username: String? = nil, clientID: String? = nil
)
    -> ClientRecord
{
    ClientRecord(
        provider: provider, name: name, username: username ?? "\(provider)-\(name)",
        clientID: clientID ?? "\(provider)/\(name)", passwordHash: password(name),
        createdAt: Date(timeIntervalSince1970: 1_700_000_000))
}

private func expectError(_ code: VGWError.Code, _ message: String? = nil, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code) error")
    } catch let error as VGWError {
        #expect(error.code == code)
        if let message { #expect(error.message == message) }
    } catch {
        Issue.record("expected VGWError, got \(error)")
    }
}

@Suite struct StoreTests {
    let dir: TempDir
    let store: Store

    init() throws {
        dir = try TempDir()
        store = try Store(path: dir.databasePath)
    }

    @Test func providerCRUD() throws {
        let created = try store.createProvider("acme")
        #expect(created.state == .running)
        #expect(abs(created.createdAt.timeIntervalSinceNow) < 60)
        try store.createProvider("beta", state: .stopped)
        #expect(try store.provider("acme") == created)
        #expect(try store.provider("nope") == nil)
        #expect(try store.providers().map(\.id) == ["acme", "beta"])

        try store.setProviderState("acme", .stopped)
        #expect(try store.provider("acme")?.state == .stopped)
        expectError(.notFound, "provider nope not found") {
            try store.setProviderState("nope", .running)
        }

        #expect(try store.deleteProvider("beta") == [])
        #expect(try store.providers().map(\.id) == ["acme"])
        expectError(.notFound, "provider beta not found") { try store.deleteProvider("beta") }
    }

    @Test func providersAreSortedByID() throws {
        for id in ["zeta", "alpha", "mid"] { try store.createProvider(id) }
        #expect(try store.providers().map(\.id) == ["alpha", "mid", "zeta"])
    }

    @Test func duplicateProviderIsRejected() throws {
        try store.createProvider("acme")
        expectError(.alreadyExists, "provider acme already exists") { try store.createProvider("acme") }
        #expect(try store.providers().count == 1)
    }

    @Test func clientCRUD() throws {
        try store.createProvider("acme")
        try store.createProvider("beta")
        let thermostat = client("acme", "thermostat")
        try store.addClient(thermostat)
        try store.addClient(client("acme", "lamp"))
        try store.addClient(client("beta", "door"))

        #expect(try store.client(provider: "acme", name: "thermostat") == thermostat)
        #expect(try store.client(provider: "beta", name: "thermostat") == nil)
        #expect(try store.clients(provider: "acme").map(\.name) == ["lamp", "thermostat"])
        #expect(
            try store.clients(provider: nil).map { "\($0.provider)/\($0.name)" } == [
                "acme/lamp", "acme/thermostat", "beta/door",
            ])
        #expect(try store.clients(provider: "nope").isEmpty)

        #expect(try store.removeClient(provider: "acme", name: "thermostat") == thermostat)
        #expect(try store.client(provider: "acme", name: "thermostat") == nil)
        expectError(.notFound, "client thermostat of provider acme not found") {
            try store.removeClient(provider: "acme", name: "thermostat")
        }
    }

    @Test func clientKindAndPasswordRoundTrip() throws {
        try store.createProvider("acme")
        var service = client("acme", "bridge")
        service.kind = "service"
        service.passwordHash = StoredPassword(hash: "aGFzaA==", salt: "c2FsdA==", iterations: 7)
        try store.addClient(service)
        let read = try #require(try store.client(provider: "acme", name: "bridge"))
        #expect(read.kind == "service")
        #expect(read.passwordHash == service.passwordHash)
    }

    @Test func clientNeedsExistingProvider() throws {
        expectError(.notFound, "provider ghost not found") { try store.addClient(client("ghost", "x")) }
    }

    @Test(arguments: [
        (
            client("acme", "thermostat", username: "other", clientID: "other"),
            "client thermostat of provider acme already exists"
        ),
        (
            client("acme", "lamp", username: "acme-thermostat", clientID: "other"),
            "username acme-thermostat already exists"
        ),
        (
            client("beta", "lamp", username: "other", clientID: "acme/thermostat"),
            "client id acme/thermostat already exists"
        ),
    ])
    func duplicateClientIsRejected(duplicate: ClientRecord, message: String) throws {
        try store.createProvider("acme")
        try store.createProvider("beta")
        try store.addClient(client("acme", "thermostat"))
        expectError(.alreadyExists, message) { try store.addClient(duplicate) }
        #expect(try store.clients(provider: nil).count == 1)
    }

    @Test func sameClientNameUnderAnotherProviderIsAllowed() throws {
        try store.createProvider("acme")
        try store.createProvider("beta")
        try store.addClient(client("acme", "lamp"))
        try store.addClient(client("beta", "lamp"))
        #expect(try store.clients(provider: nil).count == 2)
    }

    @Test func deletingProviderCascadesToItsClients() throws {
        try store.createProvider("acme")
        try store.createProvider("beta")
        let acmeClients = [client("acme", "a"), client("acme", "b")]
        for c in acmeClients { try store.addClient(c) }
        try store.addClient(client("beta", "c"))

        #expect(try store.deleteProvider("acme") == acmeClients)
        #expect(try store.clients(provider: "acme").isEmpty)
        #expect(try store.clients(provider: nil).map(\.name) == ["c"])
        // The removed usernames are free again.
        try store.createProvider("acme")
        try store.addClient(client("acme", "a"))
    }

    @Test func settings() throws {
        #expect(try store.setting("broker.port") == nil)
        try store.setSetting("broker.port", "1884")
        #expect(try store.setting("broker.port") == "1884")
        try store.setSetting("broker.port", "1885")
        #expect(try store.setting("broker.port") == "1885")
        try store.setSetting("broker.port", nil)
        #expect(try store.setting("broker.port") == nil)
        // Deleting what is not there is not an error.
        try store.setSetting("broker.port", nil)
    }

    @Test func dataSurvivesReopen() throws {
        try store.createProvider("acme", state: .stopped)
        try store.addClient(client("acme", "lamp"))
        try store.setSetting("k", "v")
        let expected = try store.provider("acme")

        let reopened = try Store(path: dir.databasePath)
        #expect(try reopened.provider("acme") == expected)
        #expect(try reopened.clients(provider: "acme") == [client("acme", "lamp")])
        #expect(try reopened.setting("k") == "v")
    }

    @Test func walModeAndForeignKeysAreOn() throws {
        let pragmas = try store.database.withConnection { db in
            (
                try db.query("PRAGMA journal_mode").first?.string(0),
                try db.query("PRAGMA foreign_keys").first?.int(0),
                try db.query("PRAGMA synchronous").first?.int(0),
                try db.query("PRAGMA busy_timeout").first?.int(0)
            )
        }
        #expect(pragmas.0 == "wal")
        #expect(pragmas.1 == 1)
        #expect(pragmas.2 == 1)  // NORMAL
        #expect(pragmas.3 == 5_000)
    }

    @Test func migrationsRunOnceAndOpeningTwiceIsHarmless() throws {
        try store.createProvider("acme")
        let second = try Store(path: dir.databasePath)
        let third = try Store(path: dir.databasePath)
        #expect(try third.database.withConnection { try $0.userVersion() } == Store.migrations.count)
        #expect(try second.providers().map(\.id) == ["acme"])
    }

    @Test func laterMigrationsApplyInOrderAndOnlyOnce() throws {
        let path = dir.url.appendingPathComponent("migrations.db").path
        let v1 = ["CREATE TABLE a (x INTEGER)"]
        let v2 = v1 + ["INSERT INTO a VALUES (1); ALTER TABLE a ADD COLUMN y TEXT"]
        try Database(path: path).migrate(v1)
        let database = try Database(path: path)
        try database.migrate(v2)
        try database.migrate(v2)
        let rows = try database.withConnection { try $0.query("SELECT x, y FROM a") }
        #expect(rows == [Row(values: [.integer(1), .null])])
        #expect(try database.withConnection { try $0.userVersion() } == 2)
        // A binary older than the file must refuse it rather than misread it.
        expectError(.storage) { try Database(path: path).migrate(v1) }
    }

    @Test func failedMigrationLeavesNoTrace() throws {
        let path = dir.url.appendingPathComponent("broken.db").path
        let database = try Database(path: path)
        expectError(.storage) { try database.migrate(["CREATE TABLE b (x); THIS IS NOT SQL"]) }
        #expect(try database.withConnection { try $0.userVersion() } == 0)
        #expect(try database.withConnection { try $0.query("SELECT name FROM sqlite_master") }.isEmpty)
    }

    @Test func nonDatabaseFileGivesStorageError() throws {
        let path = dir.url.appendingPathComponent("junk.db").path
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
        do {
            _ = try Store(path: path)
            Issue.record("opening a junk file succeeded")
        } catch let error as VGWError {
            #expect(error.code == .storage)
            #expect(error.message.contains("not a database"))
            #expect(error.message.contains(path))
        }
    }

    @Test func missingDirectoryGivesStorageError() {
        expectError(.storage) {
            _ = try Store(path: dir.url.appendingPathComponent("no/such/dir/vgw.db").path)
        }
    }

    @Test func transactionRollsBackOnThrow() throws {
        struct Boom: Error {}
        try store.createProvider("keep")
        #expect(throws: Boom.self) {
            try store.transaction {
                try store.createProvider("acme")
                try store.addClient(client("acme", "lamp"))
                try store.setSetting("k", "v")
                try store.deleteProvider("keep")
                throw Boom()
            }
        }
        #expect(try store.providers().map(\.id) == ["keep"])
        #expect(try store.clients(provider: nil).isEmpty)
        #expect(try store.setting("k") == nil)
        // The connection is usable afterwards, not stuck in a transaction.
        try store.createProvider("acme")
    }

    @Test func transactionCommitsAndReturnsValue() throws {
        let count = try store.transaction {
            try store.createProvider("a")
            try store.createProvider("b")
            return try store.providers().count
        }
        #expect(count == 2)
        let reopened = try Store(path: dir.databasePath)
        #expect(try reopened.providers().count == 2)
    }

    @Test func failedStepInsideTransactionCanBeCaughtWithoutLosingTheRest() throws {
        try store.transaction {
            try store.createProvider("acme")
            // Each store call is a savepoint, so catching its error keeps the outer work.
            #expect(throws: VGWError.self) { try store.addClient(client("ghost", "x")) }
            try store.addClient(client("acme", "lamp"))
        }
        #expect(try store.clients(provider: "acme").count == 1)
    }

    @Test func concurrentTasksAreSafe() async throws {
        let store = self.store
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    let id = "p\(worker)"
                    try store.createProvider(id)
                    for n in 0..<25 {
                        try store.addClient(client(id, "c\(n)"))
                        _ = try store.clients(provider: nil)
                        try store.setSetting("last", "\(worker)-\(n)")
                    }
                    _ = try store.removeClient(provider: id, name: "c0")
                }
            }
            try await group.waitForAll()
        }
        #expect(try store.providers().count == 8)
        #expect(try store.clients(provider: nil).count == 8 * 24)
    }

    @Test func twoStoresOnOneFileShareData() async throws {
        let other = try Store(path: dir.databasePath)
        let store = self.store
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, handle) in [store, other].enumerated() {
                group.addTask {
                    for n in 0..<20 { try handle.createProvider("s\(index)-\(n)") }
                }
            }
            try await group.waitForAll()
        }
        #expect(try store.providers().count == 40)
    }

    @Test(arguments: [
        "it's",
        "\"quoted\"",
        "x'; DROP TABLE providers; --",
        "Ünïcødé 🚀 провайдер",
        "nul\u{0}inside",
        "",
        "line\nbreak",
    ])
    func hostileStringsRoundTripVerbatim(value: String) throws {
        try store.createProvider(value)
        let hostile = ClientRecord(
            provider: value, name: value, username: value, clientID: value,
            passwordHash: StoredPassword(hash: value, salt: value, iterations: 1), kind: value,
            createdAt: Date(timeIntervalSince1970: 1))
        try store.addClient(hostile)
        try store.setSetting(value, value)

        #expect(try store.provider(value)?.id == value)
        #expect(try store.client(provider: value, name: value) == hostile)
        #expect(try store.setting(value) == value)
        #expect(try store.providers().map(\.id) == [value])
        #expect(
            try store.database.withConnection {
                try $0.query("SELECT count(*) FROM providers").first?.int(0)
            } == 1)
    }

    @Test func bindingTypesRoundTrip() throws {
        let values: [SQLValue] = [
            .integer(Int64.min), .real(-0.5), .text("t"), .blob([0, 1, 255]), .blob([]), .null,
        ]
        let row = try store.database.withConnection { db in
            try db.query("SELECT ?, ?, ?, ?, ?, ?", values).first
        }
        #expect(row?.values == values)
        #expect(try row?.bytes(3) == [0, 1, 255])
        #expect(try row?.optionalString(5) == nil)

        let converted = try store.database.withConnection { db in
            try db.query(
                "SELECT ?, ?, ?, ?, ?", [SQLValue(Data([7, 8])), SQLValue(42), SQLValue(nil as String?), "s", 1.5]
            )
            .first
        }
        #expect(converted?.values == [.blob([7, 8]), .integer(42), .null, .text("s"), .real(1.5)])
    }

    @Test func providerReadBackEqualsCreatedRecordAcrossReopen() throws {
        var created: [ProviderRecord] = []
        for n in 0..<50 { created.append(try store.createProvider("p\(n)")) }
        #expect(try Store(path: dir.databasePath).providers() == created.sorted { $0.id < $1.id })
    }

    @Test func wrongBindingCountAndTypeMismatchAreErrors() throws {
        try store.database.withConnection { db in
            expectError(.storage) { _ = try db.query("SELECT ?", []) }
            let row = try #require(try db.query("SELECT 'text'").first)
            expectError(.storage) { _ = try row.int64(0) }
            expectError(.storage) { _ = try row.string(1) }
            expectError(.storage) { _ = try db.query("SELEKT 1") }
        }
    }

    @Test func constraintViolationIsReportedAsSQLiteError() throws {
        try store.database.withConnection { db in
            do {
                try db.execute("INSERT INTO providers (id, state, created_at) VALUES ('x', 'bogus', 0)")
                Issue.record("CHECK constraint not enforced")
            } catch let error as VGWError {
                let cause = try #require(error.cause as? SQLiteError)
                #expect(cause.isConstraintViolation)
            }
        }
    }
}
