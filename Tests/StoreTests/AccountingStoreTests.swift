import Foundation
import Protocol
import Support
import Testing

@testable import Store

/// The accounting tables: events and service runs, with their time-range queries.
@Suite struct AccountingStoreTests {
    let dir: TempDir
    let store: Store
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    init() throws {
        dir = try TempDir()
        store = try Store(path: dir.databasePath)
        try store.createProvider("acme")
        try store.createProvider("beta")
    }

    @Test func eventsRoundTripAndFilterByRangeBundleAndProvider() throws {
        let detail: JSONValue = ["units": 3, "note": "hello", "nested": ["a": [1, 2]]]
        let first = try store.addEvent(provider: "acme", bundle: nil, kind: "login", detail: detail, at: t0)
        #expect(first.id > 0 && first.detail == detail && first.at == t0)
        try store.addEvent(provider: "acme", bundle: "thermo", kind: "reading", detail: [:], at: t0 + 10)
        try store.addEvent(provider: "acme", bundle: "thermo", kind: "reading", detail: [:], at: t0 + 20)
        try store.addEvent(provider: "beta", bundle: nil, kind: "login", detail: [:], at: t0 + 5)

        #expect(try store.events(provider: "acme").map(\.kind) == ["login", "reading", "reading"])
        #expect(try store.events(provider: "acme").first == first)
        // Half-open: from included, to excluded.
        #expect(try store.events(provider: "acme", from: t0 + 10, to: t0 + 20).map(\.at) == [t0 + 10])
        #expect(try store.events(provider: "acme", from: t0 + 10).count == 2)
        #expect(try store.events(provider: "acme", to: t0 + 10).count == 1)
        #expect(try store.events(provider: "acme", bundle: "thermo").count == 2)
        #expect(try store.events(provider: "beta").map(\.provider) == ["beta"])
        #expect(try store.events(provider: "nobody").isEmpty)
        expectStoreError(.notFound) {
            try store.addEvent(provider: "nobody", bundle: nil, kind: "x", detail: [:], at: t0)
        }
    }

    @Test func runsOpenCloseAndOverlapQueries() throws {
        let run = try store.openRun(provider: "acme", bundle: "thermo", at: t0)
        #expect(run.endedAt == nil && run.exit == nil)
        // A repeated "running" does not open a second run.
        #expect(try store.openRun(provider: "acme", bundle: "thermo", at: t0 + 1).id == run.id)
        let closed = try #require(
            try store.closeRun(provider: "acme", bundle: "thermo", at: t0 + 60, exit: "stopped: signal 15"))
        #expect(closed.id == run.id && closed.endedAt == t0 + 60 && closed.exit == "stopped: signal 15")
        // Nothing open any more: a second close is a no-op.
        #expect(try store.closeRun(provider: "acme", bundle: "thermo", at: t0 + 70, exit: "stopped") == nil)

        try store.openRun(provider: "acme", bundle: "thermo", at: t0 + 100)
        try store.openRun(provider: "acme", bundle: "other", at: t0 + 200)
        try store.openRun(provider: "beta", bundle: "thermo", at: t0)

        #expect(try store.runs(provider: "acme").count == 3)
        // Overlap, not containment: the first run ends inside [30, 110).
        #expect(try store.runs(provider: "acme", from: t0 + 30, to: t0 + 110).map(\.startedAt) == [t0, t0 + 100])
        #expect(try store.runs(provider: "acme", from: t0 + 60, to: t0 + 100).isEmpty)
        // Open runs overlap every range after their start.
        #expect(try store.runs(provider: "acme", from: t0 + 1_000_000).count == 2)
        #expect(try store.runs(provider: "acme", bundle: "other").map(\.bundle) == ["other"])
        #expect(try store.runs(provider: "beta").count == 1)
    }

    @Test func secondsAreClippedToTheRangeAndOpenRunsCountToNow() throws {
        let run = ServiceRun(id: 1, provider: "acme", bundle: "b", startedAt: t0, endedAt: t0 + 100, exit: "x")
        #expect(run.seconds(from: nil, to: t0 + 1000, now: t0 + 1000) == 100)
        #expect(run.seconds(from: t0 + 50, to: t0 + 80, now: t0 + 1000) == 30)
        #expect(run.seconds(from: t0 + 200, to: t0 + 300, now: t0 + 1000) == 0)
        let open = ServiceRun(id: 2, provider: "acme", bundle: "b", startedAt: t0, endedAt: nil, exit: nil)
        #expect(open.seconds(from: nil, to: t0 + 1000, now: t0 + 40) == 40)
        #expect(open.seconds(from: t0 + 10, to: t0 + 20, now: t0 + 40) == 10)
    }

    @Test func closeOpenRunsClosesEveryOpenRunOnly() throws {
        try store.openRun(provider: "acme", bundle: "a", at: t0)
        try store.closeRun(provider: "acme", bundle: "a", at: t0 + 5, exit: "exited: exit 0")
        try store.openRun(provider: "acme", bundle: "b", at: t0 + 10)
        try store.openRun(provider: "beta", bundle: "c", at: t0 + 10)
        #expect(try store.closeOpenRuns(at: t0 + 50, exit: "daemon restarted") == 2)
        let runs = try store.runs(provider: "acme") + store.runs(provider: "beta")
        #expect(runs.map(\.exit) == ["exited: exit 0", "daemon restarted", "daemon restarted"])
        #expect(runs.map(\.endedAt) == [t0 + 5, t0 + 50, t0 + 50])
        // An end before the start (clock stepped back) is clamped to the start.
        try store.openRun(provider: "acme", bundle: "d", at: t0 + 100)
        #expect(try store.closeOpenRuns(at: t0, exit: "daemon restarted") == 1)
        #expect(try store.runs(provider: "acme", bundle: "d").first?.endedAt == t0 + 100)
    }

    @Test func recordsSurviveReopenAndGoWithTheirProvider() throws {
        try store.addEvent(provider: "acme", bundle: nil, kind: "k", detail: ["x": 1], at: t0)
        try store.openRun(provider: "acme", bundle: "a", at: t0)
        let reopened = try Store(path: dir.databasePath)
        #expect(try reopened.events(provider: "acme").count == 1)
        #expect(try reopened.runs(provider: "acme").count == 1)
        try reopened.deleteProvider("acme")
        try reopened.createProvider("acme")
        #expect(try reopened.events(provider: "acme").isEmpty)
        #expect(try reopened.runs(provider: "acme").isEmpty)
    }
}

private func expectStoreError(_ code: VGWError.Code, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code) error")
    } catch let error as VGWError {
        #expect(error.code == code)
    } catch {
        Issue.record("expected VGWError, got \(error)")
    }
}
