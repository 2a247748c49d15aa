import Broker
import CLI
import Foundation
import Gateway
import Protocol
import Store
import Support
import Synchronization
import TestSupport
import Testing

/// Accounting (`acct.notify`, `acct.usage`, service runs) and `perf.get` against a real
/// gateway running real bundles.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct AccountingTests {
    @Test func serviceRunsEventsAndCsv() async throws {
        try await GatewayFixture.with(configure: BundleTests.fastRestarts) { gw in
            try await gw.createProvider("acme")
            _ = try await gw.install("acme", try TestBundles.talker())
            _ = try await gw.waitForBundle("acme", "talker", state: "running")
            let started = ContinuousClock.now
            try await Task.sleep(for: .seconds(2))
            _ = try await gw.bundleCall("bundle.stop", "acme", "talker")
            let ran = started.duration(to: .now)
            let ranSeconds = Double(ran.components.seconds) + Double(ran.components.attoseconds) / 1e18

            let usage = try await gw.admin.call("acct.usage", ["provider": "acme"])
            let runs = try #require(usage["runs"]?.arrayValue)
            #expect(runs.count == 1)
            let seconds = try #require(runs.first?["seconds"]?.numberValue)
            #expect(abs(seconds - ranSeconds) < 1.5, "ran \(ranSeconds) s, recorded \(seconds) s")
            #expect(runs.first?["exit"]?.stringValue?.hasPrefix("stopped") == true)
            #expect(runs.first?["endedAt"]?.stringValue != nil)
            #expect(usage["totals"]?["talker"]?["seconds"]?.numberValue == seconds)
            #expect(usage["totals"]?["talker"]?["runs"] == 1)
            #expect(usage["from"] == .null)

            // A provider records its own event, on its own endpoint, and reads it back.
            let acme = try await gw.providerManagement(try await gw.addClient("acme", "app"))
            let event = try await acme.call(
                "acct.notify", ["kind": "api.call", "detail": ["endpoint": "/v1/x", "n": 3], "bundle": "talker"])
            let id = try #require(event["id"]?.intValue)
            #expect(event["kind"] == "api.call" && event["provider"] == "acme" && event["bundle"] == "talker")
            #expect(event["detail"] == ["endpoint": "/v1/x", "n": 3])
            let mine = try await acme.call("acct.usage")
            #expect(mine["events"]?.arrayValue?.map { $0["id"]?.intValue } == [id])
            // Without detail: an empty object.
            #expect(try await acme.call("acct.notify", ["kind": "login"])["detail"] == [:])

            // A range entirely in the future holds nothing; one ending before the run too.
            let future = try await acme.call(
                "acct.usage", ["from": "2999-01-01T00:00:00Z", "to": "2999-01-02T00:00:00Z"])
            #expect(future["events"] == [] && future["runs"] == [] && future["totalSeconds"] == 0)
            let past = try await acme.call("acct.usage", ["to": "2000-01-01"])
            #expect(past["events"] == [] && past["runs"] == [])
            #expect(try await acme.call("acct.usage", ["bundle": "talker"])["events"]?.arrayValue?.count == 1)

            // CSV: a header, then events, runs and totals.
            let csv = try #require(try await acme.call("acct.usage", ["format": "csv"])["csv"]?.stringValue)
            let lines = csv.split(separator: "\n").map(String.init)
            #expect(lines.first == "type,id,bundle,kind,start,end,seconds,exit,detail")
            #expect(lines.filter { $0.hasPrefix("event,") }.count == 2)
            #expect(
                lines.contains {
                    $0.hasPrefix("event,\(id),talker,api.call,") && $0.hasSuffix(#""{""endpoint"":""/v1/x"",""n"":3}""#)
                })
            #expect(lines.filter { $0.hasPrefix("run,") }.count == 1)
            #expect(lines.contains { $0.hasPrefix("total,,talker,") })
            await acme.close()
        }
    }

    @Test func providersReadOnlyTheirOwnAndBadArgumentsAreRefused() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("acme")
            try await gw.createProvider("other")
            _ = try await gw.admin.call("acct.notify", ["provider": "acme", "kind": "secret"])
            let other = try await gw.providerManagement(try await gw.addClient("other", "app"))
            // Another provider's records are exactly as invisible as a provider that does not exist.
            for op in ["acct.usage", "acct.notify", "perf.get"] {
                let foreign = try await other.send(op, ["provider": "acme", "kind": "x"])
                let ghost = try await other.send(op, ["provider": "ghost", "kind": "x"])
                #expect(foreign.error?.code == .notFound && ghost.error?.code == .notFound, "\(op)")
            }
            #expect(try await other.call("acct.usage")["events"] == [])
            #expect(try await gw.admin.send("acct.usage", ["provider": "ghost"]).error?.code == .notFound)

            let refused: [(String, [String: JSONValue], VGWError.Code)] = [
                ("acct.notify", ["provider": "acme"], .invalidArgument),
                ("acct.notify", ["provider": "acme", "kind": "Bad Kind"], .invalidArgument),
                ("acct.notify", ["provider": "acme", "kind": ""], .invalidArgument),
                (
                    "acct.notify", ["provider": "acme", "kind": .string(String(repeating: "k", count: 65))],
                    .invalidArgument
                ),
                ("acct.notify", ["provider": "acme", "kind": "k", "detail": "text"], .invalidArgument),
                ("acct.notify", ["provider": "acme", "kind": "k", "detail": [1, 2]], .invalidArgument),
                (
                    "acct.notify",
                    ["provider": "acme", "kind": "k", "detail": ["big": .string(String(repeating: "x", count: 4100))]],
                    .invalidArgument
                ),
                ("acct.notify", ["provider": "acme", "kind": "k", "bundle": "ghost"], .notFound),
                ("acct.notify", ["provider": "acme", "kind": "k", "extra": 1], .invalidArgument),
                ("acct.usage", ["provider": "acme", "from": "yesterday"], .invalidArgument),
                ("acct.usage", ["provider": "acme", "to": 5], .invalidArgument),
                ("acct.usage", ["provider": "acme", "from": "2030-01-02", "to": "2030-01-01"], .invalidArgument),
                ("acct.usage", ["provider": "acme", "format": "xml"], .invalidArgument),
                ("acct.usage", ["provider": "acme", "limit": 1], .invalidArgument),
                ("perf.get", ["provider": "acme", "bundle": "ghost"], .notFound),
                ("perf.get", ["provider": "acme", "bundle": 5], .invalidArgument),
                ("perf.get", ["provider": "acme", "window": 5], .invalidArgument),
                ("perf.get", ["provider": "Bad"], .invalidArgument),
            ]
            for (op, args, code) in refused {
                #expect(try await gw.admin.send(op, args).error?.code == code, "\(op) \(args)")
            }
            // Just under the detail limit is fine.
            let fits: JSONValue = ["big": .string(String(repeating: "x", count: 4000))]
            _ = try await gw.admin.call("acct.notify", ["provider": "acme", "kind": "k", "detail": fits])
            #expect(try await gw.admin.call("acct.usage", ["provider": "acme"])["events"]?.arrayValue?.count == 2)
            await other.close()
        }
    }

    @Test func recordsSurviveADaemonRestartAndCrashLeftRunsAreClosed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgw-acct-restart-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try Ports.freePort(host: "127.0.0.1")
        let eventID = try await GatewayFixture.run(directory: directory, port: port) { gw in
            try await gw.createProvider("acme")
            _ = try await gw.install("acme", try TestBundles.talker(name: "keeper"))
            _ = try await gw.waitForBundle("acme", "keeper", state: "running")
            _ = try await gw.install("acme", try TestBundles.talker(name: "short"))
            _ = try await gw.waitForBundle("acme", "short", state: "running")
            _ = try await gw.bundleCall("bundle.stop", "acme", "short")
            let event = try await gw.admin.call("acct.notify", ["provider": "acme", "kind": "before.restart"])
            return try #require(event["id"]?.intValue)
        }
        // A clean stop closed keeper's run; reopen it as a daemon killed by SIGKILL leaves it.
        let store = try Store(path: DataDirectory(directory).store)
        // (Status changes queued at the shutdown may land a moment later: wait, bounded.)
        var keeperRuns = try store.runs(provider: "acme", bundle: "keeper")
        let deadline = ContinuousClock.now + .seconds(5)
        while keeperRuns.contains(where: { $0.endedAt == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            keeperRuns = try store.runs(provider: "acme", bundle: "keeper")
        }
        let keeperRun = try #require(keeperRuns.last)
        // (Under load the talker may have crashed and be in backoff: any closed run will do.)
        #expect(keeperRun.endedAt != nil && keeperRun.exit != nil, "\(String(describing: keeperRun))")
        try store.database.withConnection { db in
            _ = try db.execute(
                "UPDATE service_runs SET ended_at = NULL, exit = NULL WHERE id = ?", [.integer(Int64(keeperRun.id))])
        }
        let restartedAt = Date()
        try await GatewayFixture.run(directory: directory, port: port) { gw in
            _ = try await gw.waitForBundle("acme", "keeper", state: "running")
            let usage = try await gw.admin.call("acct.usage", ["provider": "acme"])
            #expect(usage["events"]?.arrayValue?.map { $0["id"]?.intValue } == [eventID])
            let runs = try #require(usage["runs"]?.arrayValue)
            let short = runs.filter { $0["bundle"] == "short" }
            #expect(short.count == 1 && short.first?["exit"]?.stringValue?.hasPrefix("stopped") == true)
            // The crash-left run, closed at the new daemon's start; and a new run since.
            let keeper = runs.filter { $0["bundle"] == "keeper" }
            let crashed = try #require(keeper.first { $0["id"]?.intValue == keeperRun.id })
            #expect(crashed["exit"] == "daemon restarted")
            let ended = try #require(crashed["endedAt"]?.stringValue.flatMap(Self.date))
            #expect(abs(ended.timeIntervalSince(restartedAt)) < 30)
            #expect(
                keeper.contains { ($0["id"]?.intValue ?? 0) > keeperRun.id && ($0["seconds"]?.numberValue ?? -1) >= 0 })
        }
    }

    @Test func perfReportsCgroupOrProcFiguresAndTraffic() async throws {
        let traffic = ProviderTraffic(messagesIn: 4, bytesIn: 400, messagesOut: 2, bytesOut: 200, denied: 1)
        try await GatewayFixture.with(configure: { $0.trafficSource = { ["acme": traffic] } }) { gw in
            try await gw.createProvider("acme")
            try await gw.createProvider("idle")
            _ = try await gw.install("acme", try TestBundles.talker())
            let pid = try #require(try await gw.waitForBundle("acme", "talker", state: "running")["pid"]?.intValue)
            let first = try await gw.admin.call("perf.get", ["provider": "acme"])
            #expect(first["provider"] == "acme" && first["state"] == "running" && first["bundlesRunning"] == 1)
            #expect((first["memoryBytes"]?.numberValue ?? 0) > 0)
            #expect((first["pids"]?.intValue ?? 0) >= 1)
            #expect(first["cpuSeconds"]?.numberValue != nil)
            #expect(["cgroup", "proc"].contains(first["source"]?.stringValue ?? ""))
            let bundle = try #require(first["bundles"]?.arrayValue?.first)
            #expect(bundle["name"] == "talker" && bundle["state"] == "running" && bundle["pid"]?.intValue == pid)
            #expect((bundle["memoryBytes"]?.numberValue ?? 0) > 0 && (bundle["pids"]?.intValue ?? 0) >= 1)
            #expect(bundle["cpuSeconds"]?.numberValue != nil && bundle["restarts"] == 0)
            #expect(
                first["traffic"] == ["messagesIn": 4, "bytesIn": 400, "messagesOut": 2, "bytesOut": 200, "denied": 1])

            // A second reading a little later has a window and a CPU percentage.
            try await Task.sleep(for: .seconds(1))
            let acme = try await gw.providerManagement(try await gw.addClient("acme", "app"))
            let second = try await acme.call("perf.get", ["bundle": "talker"])
            #expect((second["windowSeconds"]?.numberValue ?? 0) >= 0.5)
            #expect((second["cpuPercent"]?.numberValue ?? -1) >= 0)
            #expect((second["bundles"]?.arrayValue?.first?["cpuPercent"]?.numberValue ?? -1) >= 0)

            // The command line: vgw top --once, vgw perf, vgw acct notify/usage.
            let top = try await Self.vgw(gw, ["top", "--once"])
            #expect(top.status == 0)
            #expect(top.output.hasPrefix("PROVIDER"), "\(top.output)")
            #expect(top.output.contains("MSGS IN/OUT") && top.output.contains("4 / 2"))
            #expect(top.output.split(separator: "\n").contains { $0.hasPrefix("idle ") && $0.contains("0/0") })
            let perf = try await Self.vgw(gw, ["perf", "acme", "--bundle", "talker"])
            #expect(perf.status == 0 && perf.output.contains("talker") && perf.output.contains("running"))
            let noted = try await Self.vgw(gw, ["acct", "notify", "acme", "cli.test", "--detail", #"{"a": 1}"#])
            #expect(noted.status == 0 && noted.output.contains("cli.test"))
            #expect(try await Self.vgw(gw, ["acct", "notify", "acme", "cli.test", "--detail", "[1]"]).status == 1)
            let csv = try await Self.vgw(gw, ["acct", "usage", "acme", "--csv", "--from", "2000-01-01"])
            #expect(csv.status == 0 && csv.output.hasPrefix("type,id,bundle,kind,start,end,seconds,exit,detail\n"))
            #expect(csv.output.contains(#"cli.test"#))
            let table = try await Self.vgw(gw, ["acct", "usage", "acme"])
            #expect(table.status == 0 && table.output.contains("RUNNING TIME") && table.output.contains("cli.test"))

            // Nothing running: zeros, not errors; with the metering plugin loaded (it is found
            // beside the test binary), a provider that sent nothing has zero traffic.
            let idle = try await gw.admin.call("perf.get", ["provider": "idle"])
            #expect(idle["bundlesRunning"] == 0 && idle["bundles"] == [])
            #expect(idle["traffic"]?["messagesIn"] == 0 && idle["traffic"]?["bytesOut"] == 0)
            await acme.close()
        }
    }

    /// The fallback for services without a cgroup, on this test's own process group.
    @Test func processGroupUsageReadsProc() throws {
        let usage = try #require(ProcessGroupUsage.read(group: getpgrp()))
        #expect((usage.memoryBytes ?? 0) > 0)
        #expect((usage.pids ?? 0) >= 1)
        #expect((usage.cpuNanoseconds ?? 0) > 0)
        #expect(ProcessGroupUsage.read(group: 999_999_999) == nil)
    }

    /// Runs `vgw` in process against the fixture's data directory.
    static func vgw(_ gw: GatewayFixture, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        let output = Lines()
        let status = await VGWCommand.run(
            arguments + ["-d", gw.directory], out: { output.add($0) }, err: { output.add("ERR " + $0) })
        return (status, output.text)
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}

/// What a command printed, line by line.
final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}
