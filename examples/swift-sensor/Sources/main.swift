import VGWServiceKit

// A simulated presence sensor on VGWServiceKit: publishes presence every INTERVAL seconds
// and answers pings. vgwd starts it with its broker identity in VGW_* variables.
#if canImport(FoundationEssentials)
    // Not all of Foundation: it would link ICU into a static service (see Support's Logger).
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Writes a line to standard output unbuffered: it goes to a log file, where `print`'s
/// buffering would hide readings from `vgw bundle logs` for a long time.
func log(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// Seconds between readings: the manifest's `env.INTERVAL`, 5 when absent or malformed.
let interval: Double = {
    guard let text = ProcessInfo.processInfo.environment["INTERVAL"], let value = Double(text), value > 0 else {
        return 5
    }
    return value
}()

await VGWService.run { service in
    let pings = try await service.subscribe("cmd/ping")
    try await withThrowingTaskGroup(of: Void.self) { group in
        // Answers each ping with a pong carrying the ping's payload, so a caller can match them.
        group.addTask {
            for await ping in pings {
                try await service.publish("state/pong", ping.payloadString.isEmpty ? "pong" : ping.payloadString)
            }
        }
        // The simulated sensor: someone walks in and out of the living room.
        group.addTask {
            var present = false
            while !Task.isCancelled {
                if Double.random(in: 0..<1) < 0.3 { present.toggle() }
                let reading = #"{"present":\#(present),"at":"\#(Date().formatted(.iso8601))"}"#
                try await service.publish("presence/living-room", reading, retain: true)
                log("published \(reading)")
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            }
        }
        try await group.waitForAll()
    }
}
