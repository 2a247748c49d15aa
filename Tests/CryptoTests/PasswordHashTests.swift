import Testing

@testable import Crypto

@Suite struct PasswordHashTests {
    /// Produced by `mosquitto_ctrl dynsec init /tmp/ds.json admin secret` (Mosquitto 2.0.11):
    /// our hash must be the plugin's hash, or restored clients could not log in.
    @Test func matchesMosquittoDynsecHash() throws {
        let stored = PasswordHash(
            hash: "hgxmpei+oUMjSNBmmmYowKy0maAVFRHL1eAoSELd6HhtRrHpva015dZtHIO6wuJvov2Y867b72x2UbxDnm12RA==",
            salt: "JucWaipBNlmJ5jEc", iterations: 101)
        #expect(stored.verify("secret"))
        #expect(!stored.verify("Secret"))
        #expect(!stored.verify(""))
    }

    /// RFC 7914 section 11 test vector for PBKDF2-HMAC-SHA256 does not apply; this one is
    /// the well-known PBKDF2-HMAC-SHA512 vector ("password", "salt", 1 iteration).
    @Test func pbkdf2KnownVector() throws {
        let key = try PasswordHash.pbkdf2SHA512(
            password: Array("password".utf8), salt: Array("salt".utf8), iterations: 1)
        let hex = key.map { String(format: "%02x", $0) }.joined()
        #expect(hex.hasPrefix("867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"))
    }

    @Test func freshSaltEachTime() throws {
        let one = try PasswordHash.make(password: "pw")
        let two = try PasswordHash.make(password: "pw")
        #expect(one.salt != two.salt)
        #expect(one.hash != two.hash)
        #expect(one.verify("pw") && two.verify("pw"))
        #expect(Base64.decode(one.salt)?.count == 12)
        #expect(Base64.decode(one.hash)?.count == 64)
    }

    @Test func tokensAreRandomAndShellSafe() throws {
        let token = try SecureRandom.token()
        #expect(token.count == 32)
        #expect(token.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(try SecureRandom.token() != token)
    }

    @Test func malformedStoredHashNeverVerifies() {
        #expect(!PasswordHash(hash: "***", salt: "JucWaipBNlmJ5jEc", iterations: 101).verify("secret"))
        #expect(!PasswordHash(hash: "", salt: "", iterations: 0).verify(""))
    }
}
