import CSodium
import Foundation

/// Content digests (bundle archives are identified by theirs).
public enum Digest {
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        _ = Sodium.ready
        var out = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256(&out, bytes, UInt64(bytes.count))
        return out
    }

    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        sha256(bytes).map { String(format: "%02x", $0) }.joined()
    }
}
