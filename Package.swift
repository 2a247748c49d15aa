// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "VirtualGateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vgwd", targets: ["vgwd"]),
        .executable(name: "vgw", targets: ["vgw"]),
        .executable(name: "vgw-bench", targets: ["vgw-bench"]),
        .library(name: "VGWServiceKit", targets: ["VGWServiceKit"]),
        // Loaded by Mosquitto, not linked into Swift: per-provider metering and quotas.
        .library(name: "vgw_meter", type: .dynamic, targets: ["VGWMeterPlugin"]),
    ],
    targets: [
        // C libraries from Debian, one system library target each.
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // What Glibc does not give Swift: posix_spawn with process groups, prctl, prlimit.
        .target(name: "CSpawn", cSettings: [.define("_GNU_SOURCE")]),
        .target(
            name: "VGWMeterPlugin", cSettings: [.define("_GNU_SOURCE")], linkerSettings: [.linkedLibrary("cjson")]),

        .target(name: "Support", swiftSettings: strict),
        // The only importer of libsodium: password hashes, random secrets, signatures.
        .target(name: "Crypto", dependencies: ["CSodium", "Support"], swiftSettings: strict),
        .target(name: "MQTT", dependencies: ["CMosquitto", "Support"], swiftSettings: strict),
        .target(name: "Protocol", dependencies: ["Support"], swiftSettings: strict),
        .target(name: "Store", dependencies: ["CSQLite", "Support", "Protocol"], swiftSettings: strict),
        .target(name: "Supervisor", dependencies: ["CSpawn", "Support"], swiftSettings: strict),
        // Bundle archives (tar.gz) and manifests: the only importer of zlib.
        .target(name: "BundleFormat", dependencies: ["CZlib", "Protocol", "Support"], swiftSettings: strict),
        // Bundles as supervised processes: restart policy, backoff, crash loops, logs.
        .target(name: "Services", dependencies: ["Supervisor", "Support"], swiftSettings: strict),
        // Per-VGW and per-bundle limits: cgroup v2, cgroup v1, rlimits.
        .target(name: "ResourceControl", dependencies: ["Supervisor", "Support"], swiftSettings: strict),
        .target(
            name: "Broker", dependencies: ["Crypto", "MQTT", "Protocol", "Supervisor", "Support"],
            swiftSettings: strict),
        .target(
            name: "Gateway",
            dependencies: [
                "Broker", "BundleFormat", "Crypto", "MQTT", "Protocol", "ResourceControl", "Services", "Store",
                "Supervisor", "Support",
            ],
            swiftSettings: strict),
        // The provider's side of remote management: signing, fleet fan-out through the cloud.
        .target(name: "Fleet", dependencies: ["Crypto", "MQTT", "Protocol", "Support"], swiftSettings: strict),
        .target(
            name: "CLI",
            dependencies: ["Broker", "BundleFormat", "Crypto", "Fleet", "Gateway", "MQTT", "Protocol", "Support"],
            swiftSettings: strict),
        .executableTarget(name: "vgwd", dependencies: ["CLI"], swiftSettings: strict),
        .executableTarget(name: "vgw", dependencies: ["CLI"], swiftSettings: strict),
        // The benchmark: vgwd against raw Mosquitto, release build (docs/PERFORMANCE.md).
        .executableTarget(
            name: "vgw-bench",
            dependencies: [
                "Broker", "BundleFormat", "CLI", "Crypto", "Fleet", "Gateway", "MQTT", "Protocol", "Supervisor", "Support",
            ],
            swiftSettings: strict),
        // The SDK for services written in Swift, and the Swift example bundle built on it.
        .target(name: "VGWServiceKit", dependencies: ["MQTT", "Support"], swiftSettings: strict),
        .executableTarget(
            name: "example-sensor", dependencies: ["VGWServiceKit"], path: "examples/swift-sensor/Sources",
            swiftSettings: strict),

        // Fixtures shared by the tests: real brokers on free loopback ports, temporary directories.
        .target(
            name: "TestSupport", dependencies: ["Broker", "MQTT", "Supervisor", "Support"], path: "Tests/TestSupport",
            swiftSettings: strict),
        .testTarget(name: "SupportTests", dependencies: ["Support"], swiftSettings: strict),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto"], swiftSettings: strict),
        .testTarget(name: "VGWServiceKitTests", dependencies: ["VGWServiceKit", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ServicesTests", dependencies: ["Services", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "BundleFormatTests", dependencies: ["BundleFormat", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ResourceControlTests", dependencies: ["ResourceControl", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ProtocolTests", dependencies: ["Protocol"], swiftSettings: strict),
        .testTarget(name: "StoreTests", dependencies: ["Store", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "SupervisorTests", dependencies: ["Supervisor", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "BrokerTests", dependencies: ["Broker", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests", dependencies: ["CLI", "Fleet", "Gateway", "MQTT", "Protocol", "TestSupport"],
            swiftSettings: strict),
    ]
)
