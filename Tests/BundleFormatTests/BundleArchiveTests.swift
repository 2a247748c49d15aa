import BundleFormat
import Foundation
import Support
import TestSupport
import Testing

let validManifest = #"{"name":"demo","version":"1.0.0","command":"bin/run"}"#

/// An honest bundle (manifest, bin/run) to which a test appends its attack.
func bundle(manifest: String = validManifest) -> TarWriter {
    var writer = TarWriter()
    writer.addFile("manifest.json", contents: Array(manifest.utf8))
    writer.addDirectory("bin")
    writer.addFile("bin/run", contents: Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
    return writer
}

func archive(_ writer: TarWriter) throws -> [UInt8] {
    var writer = writer
    writer.addEndMarker()
    return try writer.gzipped()
}

/// Extracts `bytes` into a fresh parent and checks the refusal: one of `codes`, nothing at the
/// destination, no temporary directory left behind, and `inspect` refusing it too.
@discardableResult
func expectRefused(
    _ bytes: [UInt8], codes: Set<VGWError.Code> = [.invalidBundle], limits: ExtractionLimits = ExtractionLimits(),
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> VGWError {
    try await withTemporaryDirectory(prefix: "vgw-bundle") { parent in
        let error = try #require(throws: VGWError.self, sourceLocation: sourceLocation) {
            try BundleArchive.extract(archive: bytes, into: parent.file("bundle"), limits: limits)
        }
        #expect(codes.contains(error.code), "unexpected \(error)", sourceLocation: sourceLocation)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: parent.path) == [], sourceLocation: sourceLocation)
        let inspected = try #require(throws: VGWError.self, sourceLocation: sourceLocation) {
            try BundleArchive.inspect(archive: bytes, limits: limits)
        }
        #expect(inspected.code == error.code, sourceLocation: sourceLocation)
        return error
    }
}

func mode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return try #require(attributes[.posixPermissions] as? Int)
}

@Suite struct RoundTripTests {
    @Test func packThenExtractKeepsContentsAndModesAndIsDeterministic() async throws {
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            let source = dir.file("src")
            let longDirectory = String(repeating: "d", count: 60) + "/" + String(repeating: "e", count: 60)
            try FileManager.default.createDirectory(
                atPath: source + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(
                atPath: source + "/" + longDirectory, withIntermediateDirectories: true)
            let manifest = #"{"name":"demo","version":"1.0.0","command":"bin/run","args":["-v"]}"#
            let files: [(String, String, Int)] = [
                ("manifest.json", manifest, 0o644),
                ("bin/run", "#!/bin/sh\necho hi\n", 0o755),
                ("config.txt", "a=1\n", 0o600),
                (longDirectory + "/data.bin", String(repeating: "x", count: 1000), 0o700),
            ]
            for (name, text, permissions) in files {
                #expect(
                    FileManager.default.createFile(
                        atPath: source + "/" + name, contents: Data(text.utf8),
                        attributes: [.posixPermissions: permissions]))
            }

            let packed = try BundleArchive.pack(directory: source)
            #expect(try BundleArchive.pack(directory: source) == packed)

            let destination = dir.file("out")
            let extracted = try BundleArchive.extract(archive: packed, into: destination)
            #expect(extracted.command == "bin/run")
            #expect(extracted.args == ["-v"])
            #expect(try BundleArchive.inspect(archive: packed) == extracted)
            for (name, text, permissions) in files {
                let path = destination + "/" + name
                #expect(FileManager.default.contents(atPath: path) == Data(text.utf8), "\(name)")
                #expect(try mode(path) == (permissions & 0o111 != 0 ? 0o755 : 0o644), "\(name)")
            }
            #expect(try mode(destination + "/bin") == 0o755)
            #expect(try mode(destination) == 0o755)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["out", "src"])
        }
    }

    @Test func extractsIntoAnExistingEmptyDirectory() async throws {
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            let destination = dir.file("out")
            try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: false)
            let manifest = try BundleArchive.extract(archive: try archive(bundle()), into: destination)
            #expect(manifest.name == "demo")
            #expect(FileManager.default.fileExists(atPath: destination + "/bin/run"))
        }
    }

    @Test func refusesANonEmptyDestinationAndLeavesItAlone() async throws {
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            let destination = dir.file("out")
            try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: false)
            #expect(FileManager.default.createFile(atPath: destination + "/keep", contents: Data("k".utf8)))
            let error = try #require(throws: VGWError.self) {
                try BundleArchive.extract(archive: try archive(bundle()), into: destination)
            }
            #expect(error.code == .alreadyExists)
            #expect(try FileManager.default.contentsOfDirectory(atPath: destination) == ["keep"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
        }
    }

    @Test func leavesAnEmptyDestinationEmptyOnError() async throws {
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            let destination = dir.file("out")
            try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: false)
            var writer = bundle()
            writer.addFile("../evil", contents: [1])
            #expect(throws: VGWError.self) {
                try BundleArchive.extract(archive: try archive(writer), into: destination)
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: destination) == [])
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
        }
    }

    @Test func acceptsGNULongNamesAndPaxPaths() async throws {
        let longName = String(repeating: "n", count: 150)
        var writer = bundle()
        writer.addGNULongName("gnu-" + longName)
        writer.addEntry(name: Array("ignored".utf8), type: UInt8(ascii: "0"), mode: 0o644, size: 2, gnu: true)
        writer.addPayload(Array("ok".utf8))
        writer.addPaxHeader([(key: "mtime", value: "1"), (key: "path", value: "pax-" + longName)])
        writer.addEntry(name: Array("ignored2".utf8), type: UInt8(ascii: "0"), mode: 0o644, size: 3)
        writer.addPayload(Array("pax".utf8))
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            _ = try BundleArchive.extract(archive: try archive(writer), into: dir.file("out"))
            #expect(FileManager.default.contents(atPath: dir.file("out/gnu-" + longName)) == Data("ok".utf8))
            #expect(FileManager.default.contents(atPath: dir.file("out/pax-" + longName)) == Data("pax".utf8))
            #expect(!FileManager.default.fileExists(atPath: dir.file("out/ignored")))
        }
    }

    @Test func masksSetuidSetgidAndStickyBits() async throws {
        var writer = bundle()
        writer.addFile("suid", contents: [1], mode: 0o4755)
        writer.addFile("sgid", contents: [2], mode: 0o2644)
        writer.addDirectory("sticky", mode: 0o1777)
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            _ = try BundleArchive.extract(archive: try archive(writer), into: dir.file("out"))
            #expect(try mode(dir.file("out/suid")) == 0o755)
            #expect(try mode(dir.file("out/sgid")) == 0o644)
            #expect(try mode(dir.file("out/sticky")) == 0o755)
        }
    }

    @Test func packRefusesSymlinksAndMissingManifestOrCommand() async throws {
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            let source = dir.file("src")
            try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: false)
            #expect(throws: VGWError(.invalidBundle, "pack: \(source) has no manifest.json")) {
                try BundleArchive.pack(directory: source)
            }
            #expect(
                FileManager.default.createFile(atPath: source + "/manifest.json", contents: Data(validManifest.utf8)))
            let missing = try #require(throws: VGWError.self) { try BundleArchive.pack(directory: source) }
            #expect(missing.message.contains("bin/run"))
            try FileManager.default.createDirectory(atPath: source + "/bin", withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(atPath: source + "/bin/run", withDestinationPath: "/bin/sh")
            let symlink = try #require(throws: VGWError.self) { try BundleArchive.pack(directory: source) }
            #expect(symlink.code == .invalidBundle)
            #expect(symlink.message.contains("symbolic link"))
        }
    }
}

@Suite struct AttackTests {
    @Test(arguments: ["../evil", "/etc/evil", "a/../../evil", "a//b", ""])
    func refusesEscapingNames(_ name: String) async throws {
        var writer = bundle()
        writer.addFile(name, contents: Array("pwned".utf8))
        let error = try await expectRefused(try archive(writer))
        #expect(error.message.contains("entry"))
    }

    @Test func refusesNULAndOverlongAndTooDeepNames() async throws {
        for name in [Array("a\u{0}b".utf8), Array(String(repeating: "a/", count: 17).utf8) + [UInt8(ascii: "z")]] {
            var writer = bundle()
            writer.addPaxHeader([(key: "path", value: String(decoding: name, as: UTF8.self))])
            writer.addFile("placeholder", contents: [1])
            try await expectRefused(try archive(writer))
        }
        var writer = bundle()
        writer.addFile(String(repeating: "x", count: 256), contents: [1])
        let error = try await expectRefused(try archive(writer))
        #expect(error.message.contains("longer than 255"))
    }

    @Test func refusesASymlinkToEtcPasswd() async throws {
        var writer = bundle()
        writer.addSymlink("passwd", target: "/etc/passwd")
        let error = try await expectRefused(try archive(writer))
        #expect(error.message == #"entry "passwd": symbolic link not allowed"#)
    }

    @Test func refusesASymlinkThenAFileThroughIt() async throws {
        var writer = bundle()
        writer.addSymlink("etc", target: "/etc")
        writer.addFile("etc/evil", contents: Array("pwned".utf8))
        try await expectRefused(try archive(writer))
        #expect(!FileManager.default.fileExists(atPath: "/etc/evil"))
    }

    @Test func refusesAHardLinkToEtcPasswd() async throws {
        var writer = bundle()
        writer.addHardLink("passwd", target: "/etc/passwd")
        let error = try await expectRefused(try archive(writer))
        #expect(error.message.contains("hard link"))
    }

    @Test func refusesDevicesAndFIFOs() async throws {
        let adders: [(inout TarWriter) -> Void] = [
            { $0.addCharacterDevice("dev") }, { $0.addBlockDevice("dev") }, { $0.addFIFO("dev") },
        ]
        var messages: [String] = []
        for add in adders {
            var writer = bundle()
            add(&writer)
            messages.append(try await expectRefused(try archive(writer)).message)
        }
        #expect(messages[0].contains("character device"))
        #expect(messages[1].contains("block device"))
        #expect(messages[2].contains("FIFO"))
    }

    @Test func refusesADuplicateEntry() async throws {
        var writer = bundle()
        writer.addFile("bin/run", contents: Array("other".utf8), mode: 0o755)
        let error = try await expectRefused(try archive(writer))
        #expect(error.message.contains("duplicate"))
        // The same path spelled differently is the same entry.
        var spelled = bundle()
        spelled.addFile("./bin/run", contents: Array("other".utf8), mode: 0o755)
        let normalized = try await expectRefused(try archive(spelled))
        #expect(normalized.message == #"entry "bin/run": duplicate entry"#)
    }

    @Test func refusesAFileOverADirectoryPath() async throws {
        var writer = bundle()
        writer.addFile("manifest.json/x", contents: [1])
        try await expectRefused(try archive(writer))
    }

    @Test func refusesAMissingManifest() async throws {
        var writer = TarWriter()
        writer.addFile("bin/run", contents: [1], mode: 0o755)
        let error = try await expectRefused(try archive(writer))
        #expect(error.message.contains("manifest.json"))
    }

    @Test(arguments: [
        ("not json", "not valid JSON"),
        (#"{"name":1,"version":"1","command":"bin/run"}"#, "field name must be a string"),
        (#"{"name":"demo","version":"1","command":"bin/run","args":"x"}"#, "field args"),
        (#"{"name":"demo","version":"1","command":"bin/run","extra":true}"#, "unknown field extra"),
        (#"{"name":"Demo","version":"1","command":"bin/run"}"#, "field name"),
        (#"{"name":"demo","version":"1","command":"../x"}"#, "field command"),
        (#"{"name":"demo","version":"1","command":"/bin/sh"}"#, "field command"),
        (#"{"name":"demo","version":"1","command":"bin/missing"}"#, "not a file in the archive"),
        (#"{"name":"demo","version":"1","command":"bin"}"#, "not a file in the archive"),
        (#"{"name":"demo","version":"1","command":"bin/run","env":{"VGW_TOKEN":"x"}}"#, "reserved"),
        (
            #"{"name":"demo","version":"1","command":"bin/run","restart":"sometimes"}"#,
            "field restart must be always, on-failure or never"
        ),
    ])
    func refusesMalformedManifests(_ manifest: String, _ expected: String) async throws {
        let error = try await expectRefused(try archive(bundle(manifest: manifest)))
        #expect(error.message.contains(expected), "\(error.message)")
        #expect(error.message.hasPrefix("manifest"))
    }

    @Test func refusesAnArchiveOverTheCompressedSizeLimit() async throws {
        var writer = bundle()
        var generator = SystemRandomNumberGenerator()
        writer.addFile("noise", contents: (0..<8192).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let bytes = try archive(writer)
        #expect(bytes.count > 4096)
        try await expectRefused(bytes, codes: [.tooLarge], limits: ExtractionLimits(maxCompressedBytes: 4096))
    }

    @Test func refusesTooManyUncompressedBytes() async throws {
        var writer = bundle()
        writer.addFile("big", contents: [UInt8](repeating: 7, count: 100_000))
        let error = try await expectRefused(
            try archive(writer), codes: [.tooLarge], limits: ExtractionLimits(maxUncompressedBytes: 50_000))
        #expect(error.message.contains("50000"))
    }

    @Test func stopsADecompressionBombEarly() async throws {
        var writer = bundle()
        writer.addZeroFile("bomb", size: 200_000_000)
        let bytes = try archive(writer)
        #expect(bytes.count < 400_000)
        // The declared size alone is over the default 64 MiB limit: refused at the header.
        let declared = try await expectRefused(bytes, codes: [.tooLarge])
        #expect(declared.message.contains("bomb"))
        // With room for the size, the compression ratio must stop it while streaming.
        let start = ContinuousClock.now
        let error = try await expectRefused(
            bytes, codes: [.tooLarge], limits: ExtractionLimits(maxUncompressedBytes: 1 << 30))
        // A sanity bound with generous slack (it takes milliseconds), not a benchmark: inflating
        // all 200 MB to disk, for extract and again for inspect, would take far longer.
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(error.message.contains("ratio"))
    }

    @Test func refusesTooManyEntries() async throws {
        var writer = bundle()
        for index in 0..<10 { writer.addFile("file\(index)", contents: [1]) }
        let error = try await expectRefused(
            try archive(writer), codes: [.tooLarge], limits: ExtractionLimits(maxEntries: 5))
        #expect(error.message.contains("more than 5 entries"))
    }

    @Test func refusesTruncatedGzipAndTruncatedTar() async throws {
        let whole = try archive(bundle())
        let error = try await expectRefused(Array(whole.dropLast(20)))
        #expect(error.message.contains("truncated"))
        // A complete gzip stream around a tar stream that stops mid-entry.
        let tar = bundle().tarBytes
        let cut = try await expectRefused(try TarWriter.gzip(Array(tar.dropLast(100))))
        #expect(cut.message.contains("truncated"))
        // No end-of-archive marker at all.
        try await expectRefused(try TarWriter.gzip(tar))
    }

    @Test func refusesABadHeaderChecksum() async throws {
        var writer = bundle()
        writer.addEntry(name: Array("evil".utf8), type: UInt8(ascii: "0"), mode: 0o644, corruptChecksum: true)
        let error = try await expectRefused(try archive(writer))
        #expect(error.message.contains("checksum"))
    }

    @Test func refusesInputThatIsNotGzip() async throws {
        let error = try await expectRefused(Array("this is not a gzip stream at all".utf8))
        #expect(error.message.contains("gzip"))
        var plain = bundle()
        plain.addEndMarker()
        try await expectRefused(plain.tarBytes)
        try await expectRefused([])
    }

    @Test func refusesGarbageAfterTheEnd() async throws {
        var writer = bundle()
        writer.addEndMarker()
        writer.addRaw(Array("garbage".utf8))
        let inTar = try await expectRefused(try writer.gzipped())
        #expect(inTar.message.contains("after the end"))
        let afterGzip = try await expectRefused(try archive(bundle()) + Array("garbage".utf8))
        #expect(afterGzip.message.contains("after the end"))
    }

    @Test func refusesUnknownPaxRecordsAndEntryTypes() async throws {
        var writer = bundle()
        writer.addPaxHeader([(key: "GNU.sparse.map", value: "0,1")])
        writer.addFile("sparse", contents: [1])
        let pax = try await expectRefused(try archive(writer))
        #expect(pax.message.contains("GNU.sparse.map"))
        var other = bundle()
        other.addEntry(name: Array("weird".utf8), type: UInt8(ascii: "S"), mode: 0o644)
        let type = try await expectRefused(try archive(other))
        #expect(type.message.contains("'S'"))
    }
}

/// Archives written by GNU tar, in each format a provider might use.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tar")))
struct GNUTarTests {
    @Test(arguments: ["gnu", "posix", "ustar"])
    func extractsArchivesFromGNUTar(_ format: String) async throws {
        try await withTemporaryDirectory(prefix: "vgw-bundle") { dir in
            let source = dir.file("src")
            let deep = String(repeating: "long-directory-name/", count: 6) + "leaf"
            try FileManager.default.createDirectory(atPath: source + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: source + "/" + deep, withIntermediateDirectories: true)
            #expect(
                FileManager.default.createFile(atPath: source + "/manifest.json", contents: Data(validManifest.utf8)))
            #expect(
                FileManager.default.createFile(
                    atPath: source + "/bin/run", contents: Data("#!/bin/sh\n".utf8),
                    attributes: [.posixPermissions: 0o755]))
            #expect(FileManager.default.createFile(atPath: source + "/" + deep + "/file", contents: Data("x".utf8)))

            let output = dir.file("bundle.tgz")
            let tar = Process()
            tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
            tar.arguments = ["--format=\(format)", "-czf", output, "-C", source, "."]
            try tar.run()
            tar.waitUntilExit()
            #expect(tar.terminationStatus == 0)

            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
            let manifest = try BundleArchive.extract(archive: bytes, into: dir.file("out"))
            #expect(manifest.command == "bin/run")
            #expect(try mode(dir.file("out/bin/run")) == 0o755)
            #expect(FileManager.default.contents(atPath: dir.file("out/" + deep + "/file")) == Data("x".utf8))
        }
    }
}
