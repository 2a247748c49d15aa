import Broker
import CLI
import Crypto
import Fleet
import Foundation
import Gateway
import Protocol
import Supervisor
import Support

/// Remote management: `homes` real homes (vgwd and its broker each) bridged to one cloud
/// broker; a provider's signed fleet command to all of them, and one home's bridged round
/// trip against the same request made locally.
enum FleetBench {
    static func run(vgwd: String, homeCount: Int, samples: Int, report: Report) async throws {
        let cloud = try await RawBroker.start()
        let password = try TempDirectory("vgw-bench-fleet")
        var homes: [DaemonProcess] = []
        do {
            try Data("bench".utf8).write(to: URL(fileURLWithPath: password.path + "/cloud.pass"))
            let keys = try Ed25519.KeyPair.generate()
            let started = Clock.now()
            for index in 0..<homeCount {
                let home = try await DaemonProcess.start(
                    executable: vgwd, home: "h\(index)",
                    extraArguments: [
                        "--cloud", "127.0.0.1:\(cloud.port)", "--cloud-username", "home.h\(index)",
                        "--cloud-password-file", password.path + "/cloud.pass",
                    ])
                homes.append(home)
                let admin = try await ManagementClient.connect(
                    host: "127.0.0.1", port: home.port, username: home.credentials.username,
                    password: home.credentials.password)
                _ = try await admin.call("vgw.create", ["provider": "acme"])
                _ = try await admin.call(
                    "security.setCredential", ["provider": "acme", "publicKey": .string(Base64.encode(keys.publicKey))])
                await admin.close()
            }
            report.add("fleet", "homes started and provisioned", Double(homeCount), "")
            report.add("fleet", "time to start and provision them", Clock.seconds(since: started), "s")
            var rss = 0
            for home in homes {
                rss += ProcStats.rssKiB(home.process.pid) ?? 0
                rss += home.brokerPid.flatMap(ProcStats.rssKiB) ?? 0
            }
            report.add("fleet", "RSS per home (vgwd + mosquitto)", Double(rss) / Double(homeCount) / 1024, "MB")

            let names = (0..<homeCount).map { "h\($0)" }
            let fleet = try await FleetClient.connect(
                host: "127.0.0.1", port: cloud.port, username: "provider.acme", password: "bench", provider: "acme",
                keys: keys)
            // The bridges come up on their own schedule: wait until every home answers.
            let deadline = ContinuousClock.now + .seconds(60)
            while true {
                let results = await fleet.run(
                    op: "vgw.isAlive", target: .all(expecting: names), timeout: .seconds(3))
                if results.filter(\.ok).count == homeCount { break }
                guard ContinuousClock.now < deadline else {
                    await fleet.close()
                    throw VGWError(.timeout, "not every home answered through the cloud")
                }
            }
            var fanOut = Samples()
            for _ in 0..<5 {
                let before = Clock.now()
                let results = await fleet.run(op: "bundle.list", target: .all(expecting: names), timeout: .seconds(10))
                guard results.filter(\.ok).count == homeCount else {
                    await fleet.close()
                    throw VGWError(.unavailable, "a fleet command did not reach every home")
                }
                fanOut.add(Clock.now() - before)
            }
            report.add("fleet", "bundle.list to all \(homeCount) homes, all answered: p50", fanOut.p50, "ms")
            report.add("fleet", "bundle.list to all \(homeCount) homes, all answered: max", fanOut.maxMs, "ms")

            var bridged = Samples()
            for _ in 0..<samples {
                let before = Clock.now()
                let results = await fleet.run(
                    op: "vgw.isAlive", args: ["provider": "acme"], target: FleetTarget(homes: ["h0"]))
                guard results.first?.ok == true else { continue }
                bridged.add(Clock.now() - before)
            }
            await fleet.close()
            let local = try await ManagementClient.connect(
                host: "127.0.0.1", port: homes[0].port, username: homes[0].credentials.username,
                password: homes[0].credentials.password)
            var direct = Samples()
            for _ in 0..<samples {
                let before = Clock.now()
                _ = try await local.call("vgw.isAlive", ["provider": "acme"])
                direct.add(Clock.now() - before)
            }
            await local.close()
            report.add("fleet", "bridged signed round trip (vgw.isAlive) p50", bridged.p50, "ms")
            report.add("fleet", "bridged signed round trip p99", bridged.p99, "ms")
            report.add("fleet", "direct local round trip p50", direct.p50, "ms")
            report.add("fleet", "direct local round trip p99", direct.p99, "ms")
        } catch {
            for home in homes { await home.stop() }
            await cloud.stop()
            password.remove()
            throw error
        }
        for home in homes { await home.stop() }
        await cloud.stop()
        password.remove()
    }
}
