import Foundation
import Protocol
import Support

/// `vgw top`, `vgw perf` and `vgw acct usage` output.
enum Top {
    /// Refreshes every 2 s until interrupted (each request bounded by the client's timeout);
    /// on a terminal the screen is cleared first, so the table stays in place.
    static func run(_ client: ManagementClient, once: Bool, out: (String) -> Void) async throws -> Int32 {
        let terminal = isatty(STDOUT_FILENO) == 1
        while true {
            let table = try await table(client)
            out(terminal && !once ? "\u{1B}[H\u{1B}[2J" + table : table)
            if once { return 0 }
            try await Task.sleep(for: .seconds(2))
        }
    }

    static let headers = [
        "provider", "state", "bundles", "cpu %", "memory", "pids", "msgs in/out", "bytes in/out",
    ]

    /// One row per VGW; a VGW deleted between the listing and its `perf.get` is left out.
    static func table(_ client: ManagementClient) async throws -> String {
        let providers = try await client.call("vgw.list")["providers"]?.arrayValue ?? []
        var rows: [[String]] = []
        for provider in providers {
            guard let id = provider["provider"]?.stringValue else { continue }
            let response = try await client.send("perf.get", ["provider": .string(id)])
            guard let perf = try? response.get() else { continue }
            rows.append(row(perf))
        }
        return Table(headers: headers, rows: rows).render()
    }

    static func row(_ perf: JSONValue) -> [String] {
        let traffic = perf["traffic"]
        let known = traffic?.objectValue != nil
        func count(_ key: String) -> String { traffic?[key]?.numberValue.map { String(UInt64($0)) } ?? "-" }
        func bytes(_ key: String) -> String { traffic?[key]?.numberValue.map { size($0) } ?? "-" }
        return [
            perf["provider"]?.stringValue ?? "", perf["state"]?.stringValue ?? "",
            "\(perf["bundlesRunning"]?.intValue ?? 0)/\(perf["bundles"]?.arrayValue?.count ?? 0)",
            percent(perf["cpuPercent"]), perf["memoryBytes"]?.numberValue.map { size($0) } ?? "-",
            perf["pids"]?.intValue.map(String.init) ?? "-",
            known ? "\(count("messagesIn")) / \(count("messagesOut"))" : "-",
            known ? "\(bytes("bytesIn")) / \(bytes("bytesOut"))" : "-",
        ]
    }

    /// `vgw perf`: the VGW's line, then one per bundle.
    static func perf(_ perf: JSONValue) -> String {
        var rows = [
            [
                "(vgw)", perf["state"]?.stringValue ?? "", "-", seconds(perf["cpuSeconds"]),
                percent(perf["cpuPercent"]),
                perf["memoryBytes"]?.numberValue.map { size($0) } ?? "-",
                perf["pids"]?.intValue.map(String.init) ?? "-",
                String(perf["restarts"]?.intValue ?? 0),
            ]
        ]
        for bundle in perf["bundles"]?.arrayValue ?? [] {
            rows.append([
                bundle["name"]?.stringValue ?? "", bundle["state"]?.stringValue ?? "",
                bundle["pid"]?.intValue.map(String.init) ?? "-", seconds(bundle["cpuSeconds"]),
                percent(bundle["cpuPercent"]), bundle["memoryBytes"]?.numberValue.map { size($0) } ?? "-",
                bundle["pids"]?.intValue.map(String.init) ?? "-", String(bundle["restarts"]?.intValue ?? 0),
            ])
        }
        let table = Table(
            headers: ["name", "state", "pid", "cpu time", "cpu %", "memory", "pids", "restarts"], rows: rows
        ).render()
        let traffic = perf["traffic"]
        let trafficLine =
            traffic?.objectValue == nil
            ? "traffic: unknown"
            : "traffic: \(traffic?["messagesIn"]?.intValue ?? 0) msgs in (\(size(traffic?["bytesIn"]?.numberValue ?? 0))), "
                + "\(traffic?["messagesOut"]?.intValue ?? 0) out (\(size(traffic?["bytesOut"]?.numberValue ?? 0))), "
                + "\(traffic?["denied"]?.intValue ?? 0) denied"
        return "\(perf["provider"]?.stringValue ?? "") (figures from \(perf["source"]?.stringValue ?? "-"))\n"
            + table + "\n" + trafficLine
    }

    /// `vgw acct usage`: CSV as is, or totals, runs and events as tables.
    static func usage(_ result: JSONValue) -> String {
        if let csv = result["csv"]?.stringValue { return csv }
        let totals = (result["totals"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { name, total in
            [name, String(total["runs"]?.intValue ?? 0), seconds(total["seconds"])]
        }
        let runs = (result["runs"]?.arrayValue ?? []).map { run in
            [
                run["bundle"]?.stringValue ?? "", run["startedAt"]?.stringValue ?? "",
                run["endedAt"]?.stringValue ?? "running", seconds(run["seconds"]), run["exit"]?.stringValue ?? "-",
            ]
        }
        let events = (result["events"]?.arrayValue ?? []).map { event in
            [
                String(event["id"]?.intValue ?? 0), event["at"]?.stringValue ?? "", event["kind"]?.stringValue ?? "",
                event["bundle"]?.stringValue ?? "-",
                event["detail"].map { VGWCommand.pretty($0).replacingOccurrences(of: "\n", with: "") } ?? "",
            ]
        }
        var parts: [String] = []
        parts.append(
            totals.isEmpty
                ? "no running time" : Table(headers: ["bundle", "runs", "running time"], rows: totals).render())
        if !runs.isEmpty {
            parts.append(Table(headers: ["bundle", "started", "ended", "time", "exit"], rows: runs).render())
        }
        parts.append(
            events.isEmpty
                ? "no events" : Table(headers: ["id", "at", "kind", "bundle", "detail"], rows: events).render())
        return parts.joined(separator: "\n\n")
    }

    static func percent(_ value: JSONValue?) -> String {
        value?.numberValue.map { String(format: "%.1f%%", $0) } ?? "-"
    }

    static func seconds(_ value: JSONValue?) -> String {
        guard let seconds = value?.numberValue else { return "-" }
        if seconds < 60 { return String(format: "%.2fs", seconds) }
        let whole = Int(seconds)
        return whole >= 3600
            ? String(format: "%dh%02dm%02ds", whole / 3600, whole / 60 % 60, whole % 60)
            : String(format: "%dm%02ds", whole / 60, whole % 60)
    }

    static func size(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = bytes
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(Int(value))B" : String(format: "%.1f", value) + units[unit]
    }
}
