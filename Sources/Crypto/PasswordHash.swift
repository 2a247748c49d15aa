import CSodium
import Support

/// A password hash in the exact form Mosquitto's dynamic security plugin stores:
/// PBKDF2-HMAC-SHA512, 64-byte key, 12-byte salt, base64 both, 101 iterations by default.
///
/// The core keeps only this hash (never the password) and writes it straight into the
/// plugin's configuration, so a broker restored from the store accepts the same passwords.
public struct PasswordHash: Sendable, Equatable, Codable {
    public var hash: String
    public var salt: String
    public var iterations: Int

    /// dynsec's own default; it is what `mosquitto_ctrl` writes.
    public static let defaultIterations = 101
    static let saltLength = 12
    static let keyLength = 64

    public init(hash: String, salt: String, iterations: Int) {
        self.hash = hash
        self.salt = salt
        self.iterations = iterations
    }

    /// Hashes a password with a fresh random salt.
    public static func make(password: String, iterations: Int = defaultIterations) throws -> PasswordHash {
        let salt = try SecureRandom.bytes(saltLength)
        let key = try pbkdf2SHA512(password: Array(password.utf8), salt: salt, iterations: iterations)
        return PasswordHash(hash: Base64.encode(key), salt: Base64.encode(salt), iterations: iterations)
    }

    /// Whether `password` matches; constant-time comparison of the derived keys.
    public func verify(_ password: String) -> Bool {
        guard let salt = Base64.decode(salt), let expected = Base64.decode(hash), iterations > 0,
            let key = try? PasswordHash.pbkdf2SHA512(
                password: Array(password.utf8), salt: salt, iterations: iterations),
            key.count == expected.count
        else { return false }
        return key.withUnsafeBytes { a in
            expected.withUnsafeBytes { b in sodium_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
        }
    }

    /// PBKDF2 (RFC 8018) with HMAC-SHA512, one 64-byte block: exactly dynsec's key length.
    static func pbkdf2SHA512(password: [UInt8], salt: [UInt8], iterations: Int) throws -> [UInt8] {
        try Sodium.require()
        guard iterations > 0 else { throw VGWError(.invalidArgument, "pbkdf2 needs at least one iteration") }
        var u = hmacSHA512(key: password, message: salt + [0, 0, 0, 1])
        var t = u
        for _ in 1..<iterations {
            u = hmacSHA512(key: password, message: u)
            for index in t.indices { t[index] ^= u[index] }
        }
        return t
    }

    static func hmacSHA512(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var state = crypto_auth_hmacsha512_state()
        var out = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha512_BYTES))
        _ = crypto_auth_hmacsha512_init(&state, key, key.count)
        _ = crypto_auth_hmacsha512_update(&state, message, UInt64(message.count))
        _ = crypto_auth_hmacsha512_final(&state, &out)
        return out
    }
}
