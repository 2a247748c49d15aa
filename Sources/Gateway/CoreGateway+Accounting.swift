import Broker
import Foundation
import Protocol
import ResourceControl
import Store
import Support

extension CoreGateway {
    /// `perf.get`, `acct.notify`, `acct.usage` for one provider (the caller's own, or the
    /// one the operator names). Arguments other than `provider` are checked here.
    func accounting(_ op: ManagementOperation, provider: ProviderID, args: Arguments) async throws -> JSONValue {
        switch op {
        case .perfGet:
            try args.allowOnly(["provider", "bundle"])
            let bundle = try args.optionalString("bundle")
            if let bundle, try store.bundle(provider: provider.rawValue, name: bundle) == nil {
                throw VGWError(.notFound, "no bundle \(bundle) in \(provider)")
            }
            var performance = try await measure(provider)
            if let bundle { performance.bundles = performance.bundles.filter { $0.name == bundle } }
            return try JSONValue(encoding: performance)
        case .acctNotify:
            try args.allowOnly(["provider", "kind", "detail", "bundle"])
            return try JSONValue(encoding: try notify(provider, args))
        case .acctUsage:
            try args.allowOnly(["provider", "from", "to", "bundle", "format"])
            return try usage(provider, args)
        default:
            throw VGWError(.internalError, "\(op.rawValue) is not an accounting op")
        }
    }

    // MARK: acct.notify

    static let maxDetailBytes = 4096

    private func notify(_ provider: ProviderID, _ args: Arguments) throws -> AccountingEvent {
        let kind = try args.string("kind")
        guard Self.isValidKind(kind) else {
            throw VGWError(.invalidArgument, "argument kind must be 1 to 64 characters of a-z 0-9 . _ -")
        }
        let detail = args.values["detail"] ?? .object([:])
        guard detail.objectValue != nil else { throw VGWError(.invalidArgument, "argument detail must be an object") }
        let size = try JSONCoding.encoder.encode(detail).count
        guard size <= Self.maxDetailBytes else {
            throw VGWError(
                .invalidArgument, "argument detail is \(size) bytes encoded, over the limit of \(Self.maxDetailBytes)")
        }
        let bundle = try args.optionalString("bundle")
        if let bundle, try store.bundle(provider: provider.rawValue, name: bundle) == nil {
            throw VGWError(.notFound, "no bundle \(bundle) in \(provider)")
        }
        return try store.addEvent(provider: provider.rawValue, bundle: bundle, kind: kind, detail: detail)
    }

    static func isValidKind(_ kind: String) -> Bool {
        (1...64).contains(kind.utf8.count)
            && kind.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
    }

    // MARK: acct.usage

    private func usage(_ provider: ProviderID, _ args: Arguments) throws -> JSONValue {
        let now = Date()
        let from = try args.optionalString("from").map { try Self.date($0, "from") }
        let to = try args.optionalString("to").map { try Self.date($0, "to") } ?? now
        if let from, from > to { throw VGWError(.invalidArgument, "argument from is after to") }
        let bundle = try args.optionalString("bundle")
        let format = try args.optionalString("format") ?? "json"
        guard format == "json" || format == "csv" else {
            throw VGWError(.invalidArgument, "argument format must be json or csv")
        }
        let events = try store.events(provider: provider.rawValue, bundle: bundle, from: from, to: to)
        let runs = try store.runs(provider: provider.rawValue, bundle: bundle, from: from, to: to).map {
            UsageReport.Run(run: $0, seconds: $0.seconds(from: from, to: to, now: now))
        }
        var totals: [String: UsageReport.Total] = [:]
        for run in runs {
            totals[run.bundle, default: UsageReport.Total(seconds: 0, runs: 0)].add(run.seconds)
        }
        let report = UsageReport(
            provider: provider.rawValue, from: from, to: to, events: events, runs: runs, totals: totals,
            totalSeconds: Self.rounded(runs.reduce(0) { $0 + $1.seconds }))
        if format == "csv" { return ["csv": .string(report.csv())] }
        return try JSONValue(encoding: report)
    }

    /// ISO 8601 with or without fractional seconds, or a bare date (midnight UTC).
    static func date(_ text: String, _ name: String) throws -> Date {
        let options: [ISO8601DateFormatter.Options] = [
            [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime], [.withFullDate],
        ]
        for option in options {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = option
            if let date = formatter.date(from: text) { return date }
        }
        throw VGWError(.invalidArgument, "argument \(name) must be an ISO 8601 date, e.g. 2026-01-31T12:00:00Z")
    }

    static func rounded(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }

    // MARK: perf.get

    /// Starts the periodic CPU sampler (see `PerfHistory` for why it exists). The task holds
    /// the gateway weakly, so a forgotten stop does not keep the gateway alive.
    public func startSampler() {
        guard sampler == nil else { return }
        sampler = Task { [weak self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(5)) } catch { return }
                guard let self else { return }
                await self.sampleAll()
            }
        }
    }

    public func stopSampler() {
        sampler?.cancel()
        sampler = nil
    }

    private func sampleAll() async {
        guard let records = try? store.providers() else { return }
        let known = Set(records.map(\.id))
        perfHistory = perfHistory.filter { known.contains($0.key) }
        for record in records where record.state == .running {
            guard let provider = ProviderID(rawValue: record.id) else { continue }
            _ = try? await measure(provider, traffic: false)
        }
    }

    /// Reads every figure of a VGW and its bundles now, records the CPU counters in the
    /// provider's ring and computes the percentages against the ring's oldest usable sample.
    func measure(_ provider: ProviderID, traffic withTraffic: Bool = true) async throws -> ProviderPerformance {
        guard let record = try store.provider(provider.rawValue) else {
            throw VGWError(.notFound, "no virtual gateway \(provider)")
        }
        var bundlesSeen: [BundlePerformance] = []
        var counters: [String: UInt64] = [:]
        var totals = (cpu: UInt64(0), memory: UInt64(0), pids: 0)
        var anyProc = false
        for installed in try store.bundles(provider: provider.rawValue) {
            let status = await bundles.serviceStatus(provider: provider, name: installed.name)
            var figures = BundlePerformance(
                name: installed.name, state: status?.state.rawValue ?? "stopped", pid: status?.pid,
                restarts: status?.restarts ?? 0, cpuSeconds: nil, cpuPercent: nil, memoryBytes: nil, pids: nil,
                source: "none")
            var usage: ResourceUsage?
            if let fromGroup = bundles.resourceUsage(provider: provider, name: installed.name),
                fromGroup.cpuNanoseconds != nil || fromGroup.memoryBytes != nil
            {
                usage = fromGroup
                figures.source = "cgroup"
            } else if let pid = status?.pid, let fromProc = ProcessGroupUsage.read(group: pid) {
                usage = fromProc
                figures.source = "proc"
                anyProc = true
            }
            if let usage {
                figures.cpuSeconds = usage.cpuNanoseconds.map(Self.seconds)
                figures.memoryBytes = usage.memoryBytes
                figures.pids = usage.pids
                counters[installed.name] = usage.cpuNanoseconds
                totals.cpu += usage.cpuNanoseconds ?? 0
                totals.memory += usage.memoryBytes ?? 0
                totals.pids += usage.pids ?? 0
            }
            bundlesSeen.append(figures)
        }
        var performance = ProviderPerformance(
            provider: provider.rawValue, state: record.state.rawValue, sampledAt: Date(), windowSeconds: nil,
            bundlesRunning: bundlesSeen.filter { $0.state == "running" }.count,
            restarts: bundlesSeen.reduce(0) { $0 + $1.restarts }, cpuSeconds: nil, cpuPercent: nil,
            memoryBytes: nil, pids: nil, source: "none", traffic: nil, bundles: bundlesSeen)
        var providerCounter: UInt64?
        if let group = bundles.resourceUsage(provider: provider),
            group.cpuNanoseconds != nil || group.memoryBytes != nil
        {
            // The provider's group counts every bundle it ever ran, so its CPU time does
            // not drop when a bundle stops.
            performance.source = "cgroup"
            providerCounter = group.cpuNanoseconds
            performance.memoryBytes = group.memoryBytes
            performance.pids = group.pids
        } else {
            performance.source = anyProc ? "proc" : "none"
            providerCounter = totals.cpu
            performance.memoryBytes = totals.memory
            performance.pids = totals.pids
        }
        performance.cpuSeconds = providerCounter.map(Self.seconds)

        let sample = PerfHistory.Sample(at: .now, provider: providerCounter, bundles: counters)
        var history = perfHistory[provider.rawValue] ?? PerfHistory()
        if let base = history.baseline(for: sample) {
            let span = sample.at - base.at
            performance.windowSeconds = Self.rounded(
                Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18)
            performance.cpuPercent = PerfHistory.percent(base.provider, sample.provider, over: span)
            for index in performance.bundles.indices {
                let name = performance.bundles[index].name
                performance.bundles[index].cpuPercent = PerfHistory.percent(
                    base.bundles[name], sample.bundles[name], over: span)
            }
        }
        history.add(sample)
        perfHistory[provider.rawValue] = history
        if withTraffic {
            // With the metering plugin loaded, a provider it has not seen yet has sent nothing.
            performance.traffic = await trafficSource()[provider.rawValue] ?? (meter != nil ? ProviderTraffic() : nil)
        }
        return performance
    }

    private static func seconds(_ nanoseconds: UInt64) -> Double { rounded(Double(nanoseconds) / 1e9) }
}

/// `acct.usage`'s result (documented in docs/protocol.md).
struct UsageReport: Encodable {
    struct Run: Encodable {
        var id: Int
        var bundle: String
        var startedAt: Date
        var endedAt: Date?
        var exit: String?
        /// Running time inside the range asked for.
        var seconds: Double

        init(run: ServiceRun, seconds: Double) {
            id = run.id
            bundle = run.bundle
            startedAt = run.startedAt
            endedAt = run.endedAt
            exit = run.exit
            self.seconds = CoreGateway.rounded(seconds)
        }

        enum CodingKeys: String, CodingKey { case id, bundle, startedAt, endedAt, exit, seconds }

        func encode(to encoder: any Encoder) throws {
            // An open run says `"endedAt": null` rather than leaving the field out.
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(bundle, forKey: .bundle)
            try container.encode(startedAt, forKey: .startedAt)
            try container.encode(endedAt, forKey: .endedAt)
            try container.encode(exit, forKey: .exit)
            try container.encode(seconds, forKey: .seconds)
        }
    }

    struct Total: Encodable {
        var seconds: Double
        var runs: Int
        mutating func add(_ more: Double) {
            seconds = CoreGateway.rounded(seconds + more)
            runs += 1
        }
    }

    var provider: String
    var from: Date?
    var to: Date
    var events: [AccountingEvent]
    var runs: [Run]
    var totals: [String: Total]
    var totalSeconds: Double

    enum CodingKeys: String, CodingKey { case provider, from, to, events, runs, totals, totalSeconds }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(provider, forKey: .provider)
        try container.encode(from, forKey: .from)
        try container.encode(to, forKey: .to)
        try container.encode(events, forKey: .events)
        try container.encode(runs, forKey: .runs)
        try container.encode(totals, forKey: .totals)
        try container.encode(totalSeconds, forKey: .totalSeconds)
    }

    static let csvHeader = "type,id,bundle,kind,start,end,seconds,exit,detail"

    /// One table for a spreadsheet: events, then runs, then a total per bundle.
    func csv() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        func date(_ value: Date?) -> String { value.map { formatter.string(from: $0) } ?? "" }
        var lines = [Self.csvHeader]
        for event in events {
            let detail = (try? JSONCoding.encoder.encode(event.detail)).map { String(decoding: $0, as: UTF8.self) }
            lines.append(
                Self.row([
                    "event", String(event.id), event.bundle ?? "", event.kind, date(event.at), "", "", "", detail ?? "",
                ]))
        }
        for run in runs {
            lines.append(
                Self.row([
                    "run", String(run.id), run.bundle, "", date(run.startedAt), date(run.endedAt), String(run.seconds),
                    run.exit ?? "", "",
                ]))
        }
        for (bundle, total) in totals.sorted(by: { $0.key < $1.key }) {
            lines.append(Self.row(["total", "", bundle, "", "", "", String(total.seconds), "", ""]))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// RFC 4180 quoting; a cell a spreadsheet would run as a formula gets a leading quote.
    static func row(_ cells: [String]) -> String {
        cells.map { cell in
            var value = cell
            if let first = value.first, "=+-@".contains(first), Double(value) == nil { value = "'" + value }
            guard value.contains(where: { ",\"\n\r".contains($0) }) else { return value }
            return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }.joined(separator: ",")
    }
}
