/// Bounds on what reading one archive may cost; exceeding any of them is a `.tooLarge` error.
///
/// Archives come from providers who may be hostile, so every resource the reader spends is
/// bounded before or while it is spent, never after.
public struct ExtractionLimits: Sendable, Equatable {
    /// Size of the gzip archive itself.
    public var maxCompressedBytes: Int
    /// Total bytes of the decompressed tar stream (headers and padding included).
    public var maxUncompressedBytes: Int
    /// Number of files and directories.
    public var maxEntries: Int
    /// Decompressed bytes per compressed byte consumed so far, checked while inflating.
    public var maxCompressionRatio: Int

    /// Output allowed before the ratio is enforced: a tiny archive of mostly tar padding
    /// compresses far better than 100:1 without being a bomb.
    static let ratioGraceBytes = 1 << 20

    public init(
        maxCompressedBytes: Int = 16 << 20, maxUncompressedBytes: Int = 64 << 20, maxEntries: Int = 1000,
        maxCompressionRatio: Int = 100
    ) {
        self.maxCompressedBytes = maxCompressedBytes
        self.maxUncompressedBytes = maxUncompressedBytes
        self.maxEntries = maxEntries
        self.maxCompressionRatio = maxCompressionRatio
    }
}
