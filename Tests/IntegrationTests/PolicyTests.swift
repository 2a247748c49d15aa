import CLI
import Foundation
import Gateway
import Support
import Testing

/// `vgw apply -f`, `--dry-run`, `--prune` and `vgw export` against a real gateway.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct PolicyTests {
    static var examplePolicy: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/policy.example.json").path
    }

    /// The newcomer's tour runs end to end and tells the truth at each step.
    @Test func demoShowsIsolationCooperationAndRevocation() async throws {
        let lines = OutputCapture()
        #expect(await VGWCommand.run(["demo"], out: { lines.add($0) }, err: { lines.add("ERR " + $0) }) == 0)
        let text = lines.all.joined(separator: "\n")
        #expect(text.contains("REFUSED by the broker"))
        #expect(text.contains("messages health received from homeauto in 2 s: 0."))
        #expect(text.contains("health now receives homeauto's presence: someone is home"))
        #expect(text.contains("Messages health received in the 2 s after the revoke: 0."))
        #expect(!text.contains("ERR"))
    }

    @Test func applyIsIdempotentDryRunChangesNothingAndExportRoundTrips() async throws {
        try await GatewayFixture.with { gw in
            let lines = OutputCapture()
            func vgw(_ args: String...) async -> Int32 {
                await VGWCommand.run(
                    args + ["-d", gw.directory], out: { lines.add($0) }, err: { lines.add("ERR " + $0) })
            }
            // Dry run: the plan is printed, nothing happens.
            #expect(await vgw("apply", "-f", Self.examplePolicy, "--dry-run") == 0)
            #expect(lines.all.contains("+ provider homeauto"))
            #expect(lines.all.contains { $0.hasPrefix("+ grant homeauto health presence/#") })
            #expect(try await gw.admin.call("vgw.list")["providers"] == [])

            #expect(await vgw("apply", "-f", Self.examplePolicy) == 0)
            #expect(lines.all.contains { $0.hasPrefix("+ client homeauto.hub  password: ") })
            let list = try await gw.admin.call("vgw.list")["providers"]?.arrayValue ?? []
            #expect(list.map { $0["provider"]?.stringValue } == ["energy", "health", "homeauto"])
            #expect(list.map { $0["state"]?.stringValue } == ["stopped", "running", "running"])
            #expect(try await gw.admin.call("grant.list")["grants"]?.arrayValue?.count == 3)

            // Again: nothing to do.
            #expect(await vgw("apply", "-f", Self.examplePolicy) == 0)
            #expect(lines.last?.hasPrefix("the gateway already matches") == true)

            // Export gives back the same document.
            let exported = gw.directory + "/exported.json"
            #expect(await vgw("export", "-O", exported) == 0)
            let back = try PolicyDocument.decode(try Data(contentsOf: URL(fileURLWithPath: exported)))
            let original = try PolicyDocument.decode(try Data(contentsOf: URL(fileURLWithPath: Self.examplePolicy)))
            #expect(back.providers == original.providers)
            #expect(Set(back.grants ?? []) == Set(original.grants ?? []))

            // A smaller policy: kept without --prune, removed with it.
            let smaller = gw.directory + "/smaller.json"
            try Data(#"{"providers":{"health":{"clients":["monitor"]}}}"#.utf8).write(to: URL(fileURLWithPath: smaller))
            #expect(await vgw("apply", "-f", smaller) == 0)
            #expect(lines.all.contains("= provider homeauto (not in the file; kept, use --prune to remove)"))
            #expect(try await gw.admin.call("vgw.list")["providers"]?.arrayValue?.count == 3)
            #expect(await vgw("apply", "-f", smaller, "--prune") == 0)
            #expect(try await gw.admin.call("vgw.list")["providers"]?.arrayValue?.count == 1)
            #expect(try await gw.admin.call("grant.list")["grants"] == [])

            // A bad file is refused whole.
            let bad = gw.directory + "/bad.json"
            try Data(#"{"providers":{"ok":{},"Not/OK":{}}}"#.utf8).write(to: URL(fileURLWithPath: bad))
            #expect(await vgw("apply", "-f", bad) == 1)
            #expect(try await gw.admin.call("vgw.list")["providers"]?.arrayValue?.count == 1)
        }
    }
}
