import Foundation
import Support

/// A request that crossed the cloud: the exact request bytes, and who vouches for them.
///
/// The signature covers `signedBytes`: a fixed label, the target home (or `all`), the
/// provider, the time window and a nonce, then the request bytes exactly as carried. So a
/// signature is good for one request, to one home (or all), for one provider, once, for a
/// bounded time: a replay, a request redirected to another home or provider, or one held
/// back by an offline home beyond its expiry is refused.
public struct SignedRequest: Sendable, Codable, Equatable {
    public struct Auth: Sendable, Codable, Equatable {
        /// The target: a home id, or `all`.
        public var home: String
        /// Whose key signed: a provider id, or `core` for the operator.
        public var provider: String
        /// Seconds since 1970 when it was signed, and until when it may run.
        public var timestamp: Int64
        public var expires: Int64
        /// 16 random bytes, base64; never accepted twice.
        public var nonce: String
        /// Ed25519 over `signedBytes`, base64.
        public var signature: String

        public init(home: String, provider: String, timestamp: Int64, expires: Int64, nonce: String, signature: String)
        {
            self.home = home
            self.provider = provider
            self.timestamp = timestamp
            self.expires = expires
            self.nonce = nonce
            self.signature = signature
        }
    }

    public var auth: Auth
    /// The request's bytes, base64 (JSON could not carry them byte for byte otherwise).
    public var request: String

    public init(auth: Auth, request: String) {
        self.auth = auth
        self.request = request
    }

    public static let label = "vgw-signed-request-v1"

    /// What the signature covers.
    public static func signedBytes(
        home: String, provider: String, timestamp: Int64, expires: Int64, nonce: String, request: [UInt8]
    ) -> [UInt8] {
        Array("\(label)\n\(home)\n\(provider)\n\(timestamp)\n\(expires)\n\(nonce)\n".utf8) + request
    }
}
