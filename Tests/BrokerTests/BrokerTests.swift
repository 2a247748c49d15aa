import Foundation
import Supervisor
import Support
import Synchronization
import TestSupport
import Testing

@testable import Broker

/// Swift Testing has an `ExitStatus` of its own (for exit tests).
private typealias ExitStatus = Supervisor.ExitStatus

/// A listening socket that holds a port for as long as it lives.
private func processExists(_ pid: pid_t) -> Bool {
    kill(pid, 0) == 0 || errno != ESRCH
}

@Suite struct BrokerConfigurationTests {
    @Test func renderHasTheSettingsThatMatter() {
        let config = BrokerConfiguration(
            port: 18830, directory: "/var/lib/vgw/broker",
            mosquittoPath: "/usr/sbin/mosquitto", maxPacketBytes: 1024, user: "mosquitto")
        let lines = Set(config.render().split(separator: "\n").map(String.init))
        for expected in [
            "per_listener_settings false", "allow_anonymous false", "user mosquitto",
            "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
            "plugin_opt_config_file /var/lib/vgw/broker/dynamic-security.json", "persistence true",
            "persistence_location /var/lib/vgw/broker/", "max_packet_size 1024", "set_tcp_nodelay true",
            "log_dest stderr", "log_type information", "listener 18830 127.0.0.1",
        ] {
            #expect(lines.contains(expected), "missing: \(expected)")
        }
    }

    @Test func mosquittoIsFound() {
        #expect(BrokerConfiguration.locateMosquitto(path: "") == "/usr/sbin/mosquitto")
    }
}

@Suite struct PortsTests {
    /// Whether the port is free again after the close is not asserted: with other suites
    /// asking the kernel for free ports in parallel, it may already be someone else's.
    @Test func listeningPortIsTaken() throws {
        let listener = try TCPListener()
        #expect(!Ports.isFree(port: listener.port))
        #expect(Ports.acceptsConnections(port: listener.port))
    }

    @Test func freePortIsFree() throws {
        let port = try Ports.freePort()
        #expect(port != 0)
        #expect(Ports.isFree(port: port))
    }

    @Test func badHostIsNotFree() {
        #expect(!Ports.isFree(host: "not-an-address", port: 1))
        #expect(throws: VGWError.self) { try Ports.freePort(host: "not-an-address") }
    }
}

@Suite struct BrokerSupervisorTests {
    @Test func dynamicSecurityBrokerRefusesAnonymousAndAcceptsAdmin() async throws {
        try await BrokerFixture.withBroker(anonymous: false) { broker in
            #expect(try await broker.publish() != .exited(0))
            #expect(
                try await broker.publish(username: BrokerFixture.adminUser, password: BrokerFixture.adminPassword)
                    == .exited(0))
            #expect(try await broker.publish(username: BrokerFixture.adminUser, password: "wrong") != .exited(0))
            // The plugin can rewrite its file: changes survive a restart.
            let status = try await BrokerFixture.runTool(
                "mosquitto_ctrl",
                [
                    "-h", broker.host, "-p", String(broker.port), "-u", BrokerFixture.adminUser, "-P",
                    BrokerFixture.adminPassword, "dynsec", "createClient", "bob", "-p", "bob-secret",
                ])
            #expect(status == .exited(0))
            let json = try String(contentsOfFile: broker.configuration.dynsecFile, encoding: .utf8)
            #expect(json.contains("\"bob\""))
        }
    }

    /// As root the broker may also drop to the mosquitto account: the supervisor then hands
    /// it the data directory, and the plugin can still save its changes.
    @Test(.enabled(if: geteuid() == 0 && getpwnam("mosquitto") != nil))
    func rootDaemonCanRunTheBrokerAsTheMosquittoUser() async throws {
        try await withTemporaryDirectory { dir in
            let config = BrokerConfiguration(port: try Ports.freePort(), directory: dir.path, user: "mosquitto")
            let initialized = try await BrokerFixture.runTool(
                "mosquitto_ctrl",
                ["dynsec", "init", config.dynsecFile, BrokerFixture.adminUser, BrokerFixture.adminPassword])
            #expect(initialized == .exited(0))
            let owner = try #require(config.brokerUserOwner)
            let supervisor = BrokerSupervisor(configuration: config)
            do {
                try await supervisor.start()
                let pid = try #require(await supervisor.pid)
                let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
                #expect(status.contains("\nUid:\t\(owner.uid)\t"))
                let created = try await BrokerFixture.runTool(
                    "mosquitto_ctrl",
                    [
                        "-h", "127.0.0.1", "-p", String(config.listeners[0].port), "-u", BrokerFixture.adminUser,
                        "-P", BrokerFixture.adminPassword, "dynsec", "createClient", "carol", "-p", "carol-secret",
                    ])
                #expect(created == .exited(0))
                #expect(try String(contentsOfFile: config.dynsecFile, encoding: .utf8).contains("\"carol\""))
            } catch {
                await supervisor.stop()
                throw error
            }
            await supervisor.stop()
        }
    }

    @Test func anonymousBrokerAcceptsPublishes() async throws {
        try await BrokerFixture.withBroker(anonymous: true) { broker in
            let status = try await broker.publish()
            #expect(status == .exited(0))
        }
    }

    @Test func killedBrokerIsBackWithinTwoSecondsAfterPrepare() async throws {
        let prepared = PrepareCounter()
        try await BrokerFixture.withBroker(anonymous: true, prepare: { prepared.increment() }) { broker in
            #expect(prepared.count == 1)
            let oldPid = try #require(await broker.supervisor.pid)
            let clock = ContinuousClock()
            let killed = clock.now
            kill(oldPid, SIGKILL)
            let event = await firstMatch(broker.supervisor.events) {
                if case .started(let pid) = $0 { pid != oldPid } else { false }
            }
            let elapsed = clock.now - killed
            #expect(event != nil)
            #expect(Ports.acceptsConnections(port: broker.port))
            #expect(elapsed < .seconds(2), "restart took \(elapsed)")
            print("broker restart after SIGKILL took \(elapsed)")
            #expect(prepared.count == 2)
            let newPid = try #require(await broker.supervisor.pid)
            #expect(newPid != oldPid)
            #expect(await broker.supervisor.isRunning)
            #expect(try await broker.publish() == .exited(0))
        }
    }

    @Test func stopLeavesNoProcessAndDoesNotRestart() async throws {
        let pid = try await BrokerFixture.withBroker(anonymous: true) { broker in
            let pid = try #require(await broker.supervisor.pid)
            await broker.supervisor.stop()
            #expect(!processExists(pid))
            #expect(await broker.supervisor.pid == nil)
            #expect(await !broker.supervisor.isRunning)
            #expect(!Ports.acceptsConnections(port: broker.port))
            return pid
        }
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
    }

    @Test func portTakenByAnotherListenerIsAClearError() async throws {
        try await withTemporaryDirectory { dir in
            let listener = try TCPListener()
            let config = BrokerConfiguration(
                port: listener.port, directory: dir.path,
                dynamicSecurityPlugin: nil, allowAnonymous: true)
            let supervisor = BrokerSupervisor(configuration: config)
            let error = await #expect(throws: VGWError.self) { try await supervisor.start() }
            await supervisor.stop()
            #expect(error?.code == .broker)
            #expect(
                error?.message.hasPrefix("mosquitto did not start (exit code 1):") == true,
                "\(String(describing: error))")
            #expect(error?.message.contains("Address already in use") == true, "\(String(describing: error))")
            #expect(await supervisor.pid == nil)
        }
    }

    @Test func failingPrepareFailsTheStart() async throws {
        try await withTemporaryDirectory { dir in
            let config = BrokerConfiguration(
                port: try Ports.freePort(), directory: dir.path, dynamicSecurityPlugin: nil,
                allowAnonymous: true)
            let supervisor = BrokerSupervisor(configuration: config) {
                throw VGWError(.storage, "database is locked")
            }
            let error = await #expect(throws: VGWError.self) { try await supervisor.start() }
            #expect(error?.code == .storage)
            #expect(await supervisor.pid == nil)
        }
    }

    @Test func backoffGrowsAndIsCapped() {
        #expect(BrokerSupervisor.crashLimit == 5)
        #expect(BrokerSupervisor.backoff(crashes: 6) == .seconds(1))
        #expect(BrokerSupervisor.backoff(crashes: 7) == .seconds(2))
        #expect(BrokerSupervisor.backoff(crashes: 50) == .seconds(30))
    }
}

/// Counts prepare calls across tasks.
private final class PrepareCounter: Sendable {
    private let value = Mutex(0)
    var count: Int { value.withLock { $0 } }
    func increment() { value.withLock { $0 += 1 } }
}
