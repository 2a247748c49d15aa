import BundleFormat
import Foundation
import Support
import Testing

@Suite struct BundleManifestTests {
    func decode(_ text: String) throws -> BundleManifest {
        try BundleManifest.decode(Array(text.utf8))
    }

    @Test func appliesDefaults() throws {
        let manifest = try decode(#"{"name":"demo","version":"1.0.0","command":"bin/run"}"#)
        #expect(manifest.args == [])
        #expect(manifest.env == [:])
        #expect(manifest.restart == .onFailure)
        #expect(manifest.resources.memory == 128 << 20)
        #expect(manifest.resources.cpu == 0.5)
        #expect(manifest.resources.pids == 64)
        #expect(manifest.description == nil)
    }

    @Test func decodesEveryField() throws {
        let manifest = try decode(
            #"""
            {"name":"demo-2","version":"1.0.0+build.7","command":"bin/run","args":["--port","1"],
             "env":{"MODE":"prod","_X1":""},"restart":"always",
             "resources":{"memory":"64M","cpu":2,"pids":4096},"description":"A demo."}
            """#)
        let expected = try BundleManifest(
            name: "demo-2", version: "1.0.0+build.7", command: "bin/run", args: ["--port", "1"],
            env: ["MODE": "prod", "_X1": ""], restart: .always,
            resources: BundleManifest.Resources(memory: 64 << 20, cpu: 2, pids: 4096), description: "A demo.")
        #expect(manifest == expected)
        let encoded = try JSONEncoder().encode(manifest)
        #expect(try BundleManifest.decode(Array(encoded)) == manifest)
        #expect(try JSONDecoder().decode(BundleManifest.self, from: encoded) == manifest)
    }

    @Test func parsesMemoryStrings() throws {
        #expect(try BundleManifest.Resources.parseMemory("64M") == 64 << 20)
        #expect(try BundleManifest.Resources.parseMemory("1G") == 1 << 30)
        #expect(try BundleManifest.Resources.parseMemory("512K") == 512 << 10)
        #expect(try BundleManifest.Resources.parseMemory("4194304") == 4 << 20)
        for bad in ["64X", "M", "", "-1M", "1.5G", "99999999999999999G", " 64M"] {
            #expect(throws: VGWError.self, "\(bad)") { try BundleManifest.Resources.parseMemory(bad) }
        }
        let base = #"{"name":"demo","version":"1","command":"run","resources":{"memory":MEMORY}}"#
        #expect(try decode(base.replacingOccurrences(of: "MEMORY", with: "8388608")).resources.memory == 8 << 20)
        #expect(try decode(base.replacingOccurrences(of: "MEMORY", with: #""1G""#)).resources.memory == 1 << 30)
        let small = #expect(throws: VGWError.self) {
            try decode(base.replacingOccurrences(of: "MEMORY", with: #""512K""#))
        }
        #expect(small?.message == "manifest: field resources.memory must be at least 4M")
        let unit = #expect(throws: VGWError.self) {
            try decode(base.replacingOccurrences(of: "MEMORY", with: #""64X""#))
        }
        #expect(unit?.message.contains("resources.memory") == true)
    }

    @Test(arguments: [
        (#"[]"#, "manifest: manifest must be a JSON object"),
        (#"{"version":"1","command":"run"}"#, "manifest: missing field name"),
        (#"{"name":"-x","version":"1","command":"run"}"#, "manifest: field name must match [a-z0-9][a-z0-9-]{0,31}"),
        (#"{"name":"\#(String(repeating: "a", count: 33))","version":"1","command":"run"}"#, "field name"),
        (#"{"name":"demo","version":"","command":"run"}"#, "field version"),
        (#"{"name":"demo","version":"1 0","command":"run"}"#, "field version"),
        (#"{"name":"demo","version":"1","command":"a/../run"}"#, "field command"),
        (#"{"name":"demo","version":"1","command":"./run"}"#, "field command"),
        (#"{"name":"demo","version":"1","command":"run","env":{"1X":"a"}}"#, "field env"),
        (#"{"name":"demo","version":"1","command":"run","env":{"A":1}}"#, "field env"),
        (#"{"name":"demo","version":"1","command":"run","env":{"VGW_ID":"a"}}"#, "reserved for the daemon"),
        (
            #"{"name":"demo","version":"1","command":"run","restart":"sometimes"}"#,
            "manifest: field restart must be always, on-failure or never"
        ),
        (#"{"name":"demo","version":"1","command":"run","resources":{"cpu":0}}"#, "field resources.cpu"),
        (#"{"name":"demo","version":"1","command":"run","resources":{"cpu":65}}"#, "field resources.cpu"),
        (#"{"name":"demo","version":"1","command":"run","resources":{"pids":0}}"#, "field resources.pids"),
        (#"{"name":"demo","version":"1","command":"run","resources":{"pids":1.5}}"#, "field resources.pids"),
        (#"{"name":"demo","version":"1","command":"run","resources":{"disk":1}}"#, "unknown field resources.disk"),
        (
            #"{"name":"demo","version":"1","command":"run","description":"\#(String(repeating: "d", count: 201))"}"#,
            "field description"
        ),
    ])
    func refusesInvalidManifests(_ text: String, _ expected: String) throws {
        let error = try #require(throws: VGWError.self) { try decode(text) }
        #expect(error.code == .invalidBundle)
        #expect(error.message.contains(expected), "\(error.message)")
    }

    @Test func refusesAnOversizedPayload() throws {
        let padding = String(repeating: " ", count: 64 << 10)
        let error = try #require(throws: VGWError.self) {
            try decode(#"{"name":"demo","version":"1","command":"run"}"# + padding)
        }
        #expect(error.code == .tooLarge)
    }
}
