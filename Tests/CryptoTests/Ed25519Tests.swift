import Testing

@testable import Crypto

@Suite struct Ed25519Tests {
    @Test func signAndVerify() throws {
        let keys = try Ed25519.KeyPair.generate()
        let message = Array("bundle.start acme home-17".utf8)
        let signature = try keys.sign(message)
        #expect(signature.count == 64 && keys.publicKey.count == 32)
        #expect(Ed25519.verify(signature: signature, message: message, publicKey: keys.publicKey))
    }

    @Test func anyChangeBreaksTheSignature() throws {
        let keys = try Ed25519.KeyPair.generate()
        let other = try Ed25519.KeyPair.generate()
        let message = Array("exact bytes".utf8)
        let signature = try keys.sign(message)
        var tampered = message
        tampered[0] ^= 1
        #expect(!Ed25519.verify(signature: signature, message: tampered, publicKey: keys.publicKey))
        #expect(!Ed25519.verify(signature: signature, message: message, publicKey: other.publicKey))
        var flipped = signature
        flipped[10] ^= 0x80
        #expect(!Ed25519.verify(signature: flipped, message: message, publicKey: keys.publicKey))
        #expect(!Ed25519.verify(signature: [], message: message, publicKey: keys.publicKey))
        #expect(!Ed25519.verify(signature: signature, message: message, publicKey: [1, 2, 3]))
    }

    @Test func secretKeyRoundTrip() throws {
        let keys = try Ed25519.KeyPair.generate()
        let again = try Ed25519.KeyPair(secretKey: keys.secretKey)
        #expect(again == keys)
        #expect(throws: (any Error).self) { try Ed25519.KeyPair(secretKey: [0]) }
    }
}
