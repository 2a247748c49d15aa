import BundleFormat
import CLI
import Crypto
import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Synchronization

/// A running `vgwd` process and an operator's management client: what the gateway
/// measurements share.
final class GatewayContext {
    let daemon: DaemonProcess
    let admin: ManagementClient
    let report: Report
    /// Providers created so far, whatever their names.
    private(set) var providers = 0

    init(daemon: DaemonProcess, report: Report) async throws {
        self.daemon = daemon
        self.report = report
        admin = try await ManagementClient.connect(
            host: "127.0.0.1", port: daemon.port, username: daemon.credentials.username,
            password: daemon.credentials.password, timeout: .seconds(60))
    }

    func close() async { await admin.close() }

    /// Creates a VGW; returns how long vgw.create took, in ns.
    @discardableResult
    func createProvider(_ id: String) async throws -> UInt64 {
        let start = Clock.now()
        _ = try await admin.call("vgw.create", ["provider": .string(id)])
        providers += 1
        return Clock.now() - start
    }

    func addClient(_ provider: String, _ name: String) async throws -> IssuedCredentials {
        try await admin.call("client.add", ["provider": .string(provider), "name": .string(name)])
            .decode(IssuedCredentials.self)
    }

    static func configuration(_ credentials: IssuedCredentials) -> MQTTConfiguration {
        MQTTConfiguration(
            host: "127.0.0.1", port: Int(credentials.port), clientID: credentials.clientId,
            username: credentials.username, password: credentials.password, reconnect: false,
            operationTimeout: .seconds(30))
    }

    /// Two fresh clients of `provider` on `vgw/<provider>/<leaf>`.
    func clientPair(_ provider: String, leaf: String) async throws -> ClientPair {
        let publisher = try await addClient(provider, "\(leaf)-pub")
        let subscriber = try await addClient(provider, "\(leaf)-sub")
        return ClientPair(
            publisher: Self.configuration(publisher), subscriber: Self.configuration(subscriber),
            topic: publisher.topicPrefix + leaf)
    }

    struct Memory {
        var vgwdKiB: Int
        var brokerKiB: Int
        var totalKiB: Int { vgwdKiB + brokerKiB }
    }

    func memory() throws -> Memory {
        guard let broker = daemon.brokerPid, let brokerKiB = ProcStats.rssKiB(broker),
            let vgwdKiB = ProcStats.rssKiB(daemon.process.pid)
        else { throw VGWError(.unavailable, "vgwd or its broker is not running; see \(daemon.logFile)") }
        return Memory(vgwdKiB: vgwdKiB, brokerKiB: brokerKiB)
    }
}

/// Management round trips: the operator's requests answered by vgwd.
enum ManagementBench {
    static func run(_ context: GatewayContext, requests: Int, ops: [String] = ["vgw.list", "vgw.isAlive"]) async throws
    {
        let all: [(String, [String: JSONValue])] = [("vgw.list", [:]), ("vgw.isAlive", ["provider": .string("p0000")])]
        for (op, args) in all where ops.contains(op) {
            for _ in 0..<min(100, requests) { _ = try await context.admin.call(op, args) }
            var samples = Samples()
            for _ in 0..<requests {
                let start = Clock.now()
                _ = try await context.admin.call(op, args)
                samples.add(Clock.now() - start)
            }
            context.report.add("management", "\(op) round trip p50 (\(context.providers) VGWs)", samples.p50, "ms")
            context.report.add("management", "\(op) round trip p99 (\(context.providers) VGWs)", samples.p99, "ms")
        }
    }
}

/// VGW creation rate, memory per VGW, the cost of one ACL change and the data-plane stall it causes.
enum ScaleBench {
    struct Level {
        var providers: Int
        var memory: GatewayContext.Memory
        var createMs: Double = .nan
        var createMaxMs: Double = .nan
        var stallMs: Double = .nan
        var baselineGapMs: Double = .nan
    }

    /// Creates providers p<index> until `target` exist; reports the rate and the memory.
    static func grow(_ context: GatewayContext, to target: Int, baseline: GatewayContext.Memory) async throws -> Level {
        let count = target - context.providers
        let start = Clock.now()
        var index = context.providers
        while context.providers < target {
            try await context.createProvider(String(format: "p%04d", index))
            index += 1
        }
        let seconds = Clock.seconds(since: start)
        try await Task.sleep(for: .seconds(1))
        let memory = try context.memory()
        let report = context.report
        let section = "scale-\(target)"
        report.add(section, "created \(count) VGWs in", seconds, "s")
        report.add(section, "creation rate", Double(count) / seconds, "VGW/s")
        report.add(section, "RSS vgwd", Double(memory.vgwdKiB) / 1024, "MB")
        report.add(section, "RSS mosquitto", Double(memory.brokerKiB) / 1024, "MB")
        report.add(section, "RSS total", Double(memory.totalKiB) / 1024, "MB")
        report.add(
            section, "per VGW vgwd (vs 0 VGWs)", Double(memory.vgwdKiB - baseline.vgwdKiB) / Double(target), "KB")
        report.add(
            section, "per VGW mosquitto (vs 0 VGWs)", Double(memory.brokerKiB - baseline.brokerKiB) / Double(target),
            "KB")
        report.add(
            section, "per VGW total (vs 0 VGWs)", Double(memory.totalKiB - baseline.totalKiB) / Double(target), "KB")
        let dynsecFile = context.daemon.directory.path + "/data/broker/dynamic-security.json"
        let size = (try? FileManager.default.attributesOfItem(atPath: dynsecFile)[.size] as? Int) ?? 0
        report.add(section, "dynamic-security.json size", Double(size) / 1024, "KB")
        return Level(providers: target, memory: memory)
    }

    /// `changes` vgw.create calls while another provider's pair loops QoS 0 round trips.
    static func probe(_ context: GatewayContext, level: inout Level, stallPair: ClientPair, changes: Int) async throws {
        let probe = try await StallProbe(stallPair)
        var creates = Samples()
        var brokerWrites = 0
        var stall = 0.0
        var baseline = 0.0
        do {
            try await Task.sleep(for: .milliseconds(300))
            for change in 0..<changes {
                let quiet = Clock.now()
                try await Task.sleep(for: .milliseconds(300))
                let before = Clock.now()
                baseline = max(baseline, probe.maxGapMs(from: quiet, to: before))
                let broker = context.daemon.brokerPid ?? 0
                let written = ProcStats.writtenBytes(broker) ?? 0
                let took = try await context.createProvider("q\(level.providers)-\(change)")
                brokerWrites += (ProcStats.writtenBytes(broker) ?? 0) - written
                creates.add(took)
                try await Task.sleep(for: .milliseconds(100))
                stall = max(stall, probe.maxGapMs(from: before, to: Clock.now()))
            }
        } catch {
            await probe.close()
            throw error
        }
        // Grants: create and revoke between two VGWs of this level while the probe runs.
        // The broker applies the ACL change before the plugin answers, so the round trip
        // bounds the time until the grant (or its revocation) is in force.
        var grants = Samples()
        var revokes = Samples()
        var grantStall = 0.0
        do {
            for _ in 0..<changes {
                let before = Clock.now()
                let grant = try await context.admin.call(
                    "grant.create", ["owner": "p0000", "grantee": "p0001", "filter": "shared/#", "access": "read"])
                grants.add(Clock.now() - before)
                let middle = Clock.now()
                _ = try await context.admin.call("grant.revoke", ["id": grant["id"] ?? .null])
                revokes.add(Clock.now() - middle)
                try await Task.sleep(for: .milliseconds(100))
                grantStall = max(grantStall, probe.maxGapMs(from: before, to: Clock.now()))
            }
        } catch {
            await probe.close()
            throw error
        }
        await probe.close()
        context.report.add("acl-\(level.providers)", "grant.create to effective p50", grants.p50, "ms")
        context.report.add("acl-\(level.providers)", "grant.create to effective p99", grants.p99, "ms")
        context.report.add("acl-\(level.providers)", "grant.revoke to effective p50", revokes.p50, "ms")
        context.report.add("acl-\(level.providers)", "grant.revoke to effective p99", revokes.p99, "ms")
        context.report.add("acl-\(level.providers)", "data-plane max gap during grant changes", grantStall, "ms")
        level.createMs = creates.p50
        level.createMaxMs = creates.maxMs
        level.stallMs = stall
        level.baselineGapMs = baseline
        let section = "acl-\(level.providers)"
        context.report.add(section, "one vgw.create p50 (of \(changes))", creates.p50, "ms")
        context.report.add(section, "one vgw.create max", creates.maxMs, "ms")
        context.report.add(
            section, "mosquitto bytes written per vgw.create", Double(brokerWrites) / Double(changes) / 1024, "KB")
        context.report.add(section, "data-plane max gap during a change", stall, "ms")
        context.report.add(section, "data-plane max gap without changes", baseline, "ms")
    }
}

/// vgwd (and its broker) at rest.
enum IdleBench {
    static func run(_ context: GatewayContext, seconds: Int) async throws {
        let vgwd = context.daemon.process.pid
        guard let broker = context.daemon.brokerPid else { throw VGWError(.unavailable, "no broker") }
        try await Task.sleep(for: .seconds(1))
        let start = Clock.now()
        let vgwdTicks = ProcStats.cpuTicks(vgwd) ?? 0
        let brokerTicks = ProcStats.cpuTicks(broker) ?? 0
        try await Task.sleep(for: .seconds(seconds))
        let elapsed = Clock.seconds(since: start)
        let vgwdUsed = Double((ProcStats.cpuTicks(vgwd) ?? 0) - vgwdTicks) / ProcStats.ticksPerSecond
        let brokerUsed = Double((ProcStats.cpuTicks(broker) ?? 0) - brokerTicks) / ProcStats.ticksPerSecond
        let memory = try context.memory()
        let report = context.report
        report.add("idle", "vgwd RSS (\(context.providers) VGWs)", Double(memory.vgwdKiB) / 1024, "MB")
        report.add("idle", "vgwd RssAnon (heap, stacks)", Double(ProcStats.anonymousKiB(vgwd) ?? 0) / 1024, "MB")
        report.add("idle", "vgwd RssFile (mapped libraries)", Double(ProcStats.fileKiB(vgwd) ?? 0) / 1024, "MB")
        report.add("idle", "vgwd CPU over \(seconds) s", vgwdUsed / elapsed * 100, "%")
        report.add("idle", "mosquitto RSS", Double(memory.brokerKiB) / 1024, "MB")
        report.add("idle", "mosquitto CPU over \(seconds) s", brokerUsed / elapsed * 100, "%")
    }
}

/// Bundles: install-to-first-message latency and the memory of running services.
enum BundleBench {
    static func shellBundle(name: String, script: String) throws -> [UInt8] {
        let manifest = #"{"name":"\#(name)","version":"1.0.0","command":"bin/run.sh","restart":"on-failure"}"#
        var tar = TarWriter()
        tar.addFile("manifest.json", contents: Array(manifest.utf8))
        tar.addDirectory("bin")
        tar.addFile("bin/run.sh", contents: Array(("#!/bin/sh\n" + script).utf8), mode: 0o755)
        tar.addEndMarker()
        return try tar.gzipped()
    }

    /// Publishes once at start with the service's own identity, then idles.
    static func talker(_ name: String) throws -> [UInt8] {
        try shellBundle(
            name: name,
            script: """
                set -eu
                mosquitto_pub -h "$VGW_MQTT_HOST" -p "$VGW_MQTT_PORT" -u "$VGW_MQTT_USERNAME" \
                  -P "$VGW_MQTT_PASSWORD" -i "$VGW_MQTT_CLIENT_ID" -V mqttv5 -q 1 \
                  -t "${VGW_TOPIC_PREFIX}hello/\(name)" -m hi
                while :; do sleep 1; done

                """)
    }

    static func sleeper(_ name: String) throws -> [UInt8] {
        try shellBundle(name: name, script: "while :; do sleep 1; done\n")
    }

    static func install(_ context: GatewayContext, _ provider: String, _ archive: [UInt8]) async throws {
        _ = try await context.admin.call(
            "bundle.install",
            ["provider": .string(provider), "archive": .string(Base64.encode(archive)), "start": .bool(true)])
    }

    /// RSS of every process under vgwd except its broker.
    static func servicesKiB(_ context: GatewayContext) -> (kib: Int, processes: Int) {
        let broker = context.daemon.brokerPid
        let pids = ProcStats.descendants(of: context.daemon.process.pid).filter { $0 != broker }
        return (pids.compactMap(ProcStats.rssKiB).reduce(0, +), pids.count)
    }

    static func run(_ context: GatewayContext, provider: String, samples: Int, services: Int) async throws {
        let report = context.report
        let watcher = try await MQTTClient.connected(
            GatewayContext.configuration(try await context.addClient(provider, "watch")))
        var latency = Samples()
        let arrivals = Mutex<[String: UInt64]>([:])
        let receiver = Task {
            for await message in watcher.messages {
                let now = Clock.now()
                arrivals.withLock { $0[message.topic] = now }
            }
        }
        defer { receiver.cancel() }
        do {
            _ = try await watcher.subscribe("vgw/\(provider)/hello/#", qos: .atLeastOnce)
            for index in 0..<samples {
                let name = "talker\(index)"
                let topic = "vgw/\(provider)/hello/\(name)"
                let archive = try talker(name)
                let start = Clock.now()
                try await install(context, provider, archive)
                var arrival: UInt64?
                while arrival == nil {
                    arrival = arrivals.withLock { $0[topic] }
                    if arrival == nil {
                        guard Clock.seconds(since: start) < 20 else {
                            let logs = try? await context.admin.call(
                                "bundle.logs", ["provider": .string(provider), "name": .string(name)])
                            throw VGWError(
                                .timeout,
                                "no message from bundle \(name) within 20 s; its logs: \(String(describing: logs))")
                        }
                        try await Task.sleep(for: .milliseconds(1))
                    }
                }
                latency.add(arrival! - start)
            }
        } catch {
            await watcher.disconnect()
            throw error
        }
        await watcher.disconnect()
        report.add("bundles", "install-to-first-message p50 (of \(samples))", latency.p50, "ms")
        report.add("bundles", "install-to-first-message max", latency.maxMs, "ms")
        for index in 0..<samples {
            _ = try await context.admin.call(
                "bundle.uninstall", ["provider": .string(provider), "name": .string("talker\(index)")])
        }

        try await Task.sleep(for: .seconds(1))
        let before = try context.memory()
        let idle = servicesKiB(context)
        for index in 0..<services { try await install(context, provider, try sleeper("svc\(index)")) }
        try await Task.sleep(for: .seconds(2))
        // Average a few samples: each loop's `sleep` child comes and goes.
        var total = 0
        var processes = 0
        let rounds = 5
        for _ in 0..<rounds {
            let (kib, count) = servicesKiB(context)
            total += kib - idle.kib
            processes += count - idle.processes
            try await Task.sleep(for: .milliseconds(230))
        }
        let after = try context.memory()
        report.add("bundles", "running services", Double(services), "")
        report.add("bundles", "processes per service (mean)", Double(processes) / Double(rounds * services), "")
        report.add("bundles", "RSS per service (sum / N)", Double(total) / Double(rounds * services), "KB")
        report.add(
            "bundles", "vgwd growth per service", Double(after.vgwdKiB - before.vgwdKiB) / Double(services), "KB")
        report.add(
            "bundles", "mosquitto growth per service", Double(after.brokerKiB - before.brokerKiB) / Double(services),
            "KB")
        for index in 0..<services {
            _ = try await context.admin.call(
                "bundle.uninstall", ["provider": .string(provider), "name": .string("svc\(index)")])
        }
    }
}
