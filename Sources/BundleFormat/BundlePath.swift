import Support

/// The rules for a path inside a bundle, shared by extraction, packing and the manifest's
/// `command`, so that whatever `pack` writes, `extract` accepts.
enum BundlePath {
    static let maxBytes = 255
    static let maxDepth = 16

    /// Splits a raw entry name into validated components.
    ///
    /// "." components and a trailing "/" are dropped (tar writes "./a" and "dir/"); anything
    /// that could point outside the bundle or confuse a file system or a log is refused.
    /// Returns no components for the bundle root itself ("./").
    static func components(_ raw: [UInt8], isDirectory: Bool) throws -> [String] {
        let shown = String(reflecting: String(decoding: raw, as: UTF8.self))
        func refuse(_ why: String) -> VGWError { VGWError(.invalidBundle, "entry \(shown): \(why)") }

        guard !raw.isEmpty else { throw VGWError(.invalidBundle, "entry with an empty name") }
        guard !raw.contains(0) else { throw refuse("NUL in name") }
        guard raw.count <= maxBytes else { throw refuse("path longer than \(maxBytes) bytes") }
        guard raw.first != UInt8(ascii: "/") else { throw refuse("absolute path") }
        guard !raw.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { throw refuse("control character in name") }
        guard let text = String(validating: raw, as: UTF8.self) else { throw refuse("name is not UTF-8") }

        var parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts.last == "" { parts.removeLast() }
        var components: [String] = []
        for part in parts {
            switch part {
            case "..": throw refuse("'..' component")
            case ".": continue
            case "": throw refuse("empty path component")
            default: components.append(part)
            }
        }
        guard components.count <= maxDepth else { throw refuse("more than \(maxDepth) levels deep") }
        if components.isEmpty && !isDirectory { throw refuse("empty name") }
        return components
    }
}
