import Crypto
import Foundation
import Protocol

/// Signs management requests for a home (or `all`), as `RequestAuthenticator` in the home
/// verifies them.
public enum RequestSigner {
    public static func sign(
        _ request: [UInt8], home: String, provider: String, keys: Ed25519.KeyPair, validFor: Int64 = 60,
        now: Int64 = Int64(Date().timeIntervalSince1970)
    ) throws -> SignedRequest {
        let nonce = Base64.encode(try SecureRandom.bytes(16))
        let expires = now + validFor
        let bytes = SignedRequest.signedBytes(
            home: home, provider: provider, timestamp: now, expires: expires, nonce: nonce, request: request)
        return SignedRequest(
            auth: .init(
                home: home, provider: provider, timestamp: now, expires: expires, nonce: nonce,
                signature: Base64.encode(try keys.sign(bytes))),
            request: Base64.encode(request))
    }
}
