import CSodium
import Support

/// libsodium must be initialised once per process before any other call; `sodium_init`
/// is itself thread-safe and idempotent, the static makes it happen exactly once.
enum Sodium {
    static let ready: Bool = sodium_init() >= 0

    static func require() throws {
        guard ready else { throw VGWError(.internalError, "libsodium could not be initialised") }
    }
}

/// Cryptographically secure random bytes and secrets.
public enum SecureRandom {
    public static func bytes(_ count: Int) throws -> [UInt8] {
        try Sodium.require()
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }

    /// A password or token: `count` random bytes, URL-safe base64 without padding, so it
    /// survives shells, JSON and environment variables unquoted.
    public static func token(bytes count: Int = 24) throws -> String {
        Base64.urlSafe(try bytes(count))
    }
}

public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String {
        bytes.isEmpty ? "" : sodiumBase64(bytes, variant: sodium_base64_VARIANT_ORIGINAL)
    }

    public static func urlSafe(_ bytes: [UInt8]) -> String {
        bytes.isEmpty ? "" : sodiumBase64(bytes, variant: sodium_base64_VARIANT_URLSAFE_NO_PADDING)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        guard (try? Sodium.require()) != nil else { return nil }
        let input = Array(text.utf8)
        var output = [UInt8](repeating: 0, count: input.count * 3 / 4 + 3)
        var length = 0
        let capacity = output.count
        let rc = input.withUnsafeBufferPointer { inPtr in
            inPtr.withMemoryRebound(to: CChar.self) { chars in
                sodium_base642bin(
                    &output, capacity, chars.baseAddress, chars.count, nil, &length, nil,
                    sodium_base64_VARIANT_ORIGINAL)
            }
        }
        guard rc == 0 else { return nil }
        return Array(output.prefix(length))
    }

    private static func sodiumBase64(_ bytes: [UInt8], variant: Int32) -> String {
        _ = Sodium.ready
        let size = sodium_base64_encoded_len(bytes.count, variant)
        var out = [CChar](repeating: 0, count: size)
        bytes.withUnsafeBufferPointer { inPtr in
            _ = sodium_bin2base64(&out, size, inPtr.baseAddress, inPtr.count, variant)
        }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
