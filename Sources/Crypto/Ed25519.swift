import CSodium
import Support

/// Ed25519 keys and signatures (libsodium's `crypto_sign`): the providers' and operator's
/// identities for remote management and signed bundles.
public enum Ed25519 {
    public static let publicKeyBytes = Int(crypto_sign_PUBLICKEYBYTES)
    public static let secretKeyBytes = Int(crypto_sign_SECRETKEYBYTES)
    public static let signatureBytes = Int(crypto_sign_BYTES)

    public struct KeyPair: Sendable, Equatable {
        public let publicKey: [UInt8]
        /// libsodium's 64-byte form (seed and public key).
        public let secretKey: [UInt8]

        public init(secretKey: [UInt8]) throws {
            guard secretKey.count == Ed25519.secretKeyBytes else {
                throw VGWError(.invalidArgument, "an ed25519 secret key is \(Ed25519.secretKeyBytes) bytes")
            }
            self.secretKey = secretKey
            self.publicKey = Array(secretKey.suffix(Ed25519.publicKeyBytes))
        }

        public static func generate() throws -> KeyPair {
            try Sodium.require()
            var publicKey = [UInt8](repeating: 0, count: Ed25519.publicKeyBytes)
            var secretKey = [UInt8](repeating: 0, count: Ed25519.secretKeyBytes)
            guard crypto_sign_keypair(&publicKey, &secretKey) == 0 else {
                throw VGWError(.internalError, "cannot generate an ed25519 key pair")
            }
            return try KeyPair(secretKey: secretKey)
        }

        public func sign(_ message: [UInt8]) throws -> [UInt8] {
            try Sodium.require()
            var signature = [UInt8](repeating: 0, count: Ed25519.signatureBytes)
            guard crypto_sign_detached(&signature, nil, message, UInt64(message.count), secretKey) == 0 else {
                throw VGWError(.internalError, "cannot sign")
            }
            return signature
        }
    }

    /// Whether `signature` is `publicKey`'s over exactly `message`; malformed input is false.
    public static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        guard Sodium.ready, signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }
}
