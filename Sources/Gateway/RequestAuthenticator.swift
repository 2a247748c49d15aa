import Crypto
import Foundation
import Protocol
import Store
import Support

/// Checks signed requests from the cloud before anything else looks at them.
///
/// Each refusal has its own error code, so a fleet operator can tell a forged request from
/// a misdirected, replayed or stale one. Nonces are kept in the store until their request
/// expires, so a replay is refused across daemon restarts too.
public struct RequestAuthenticator: Sendable {
    public static let unauthenticated: VGWError.Code = "unauthenticated"
    public static let badSignature: VGWError.Code = "bad_signature"
    public static let wrongHome: VGWError.Code = "wrong_home"
    public static let wrongProvider: VGWError.Code = "wrong_provider"
    public static let replayed: VGWError.Code = "replayed"
    public static let expired: VGWError.Code = "expired"

    /// Largest allowed validity window, and tolerated clock skew.
    public static let maxWindow: Int64 = 24 * 3600
    public static let skew: Int64 = 300

    public let store: Store
    public let homeID: String
    let now: @Sendable () -> Int64

    public init(
        store: Store, homeID: String, now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.store = store
        self.homeID = homeID
        self.now = now
    }

    /// The registered public key of a provider (or `core`), if any.
    public func publicKey(of provider: String) throws -> [UInt8]? {
        try store.setting("key." + provider).flatMap { Base64.decode($0) }
    }

    public func register(publicKey: [UInt8], for provider: String) throws {
        guard publicKey.count == Ed25519.publicKeyBytes else {
            throw VGWError(.invalidArgument, "an ed25519 public key is \(Ed25519.publicKeyBytes) bytes")
        }
        try store.setSetting("key." + provider, Base64.encode(publicKey))
    }

    /// The key under which a request's nonce (and its response) is kept.
    public static func nonceKey(_ auth: SignedRequest.Auth) -> String { auth.provider + ":" + auth.nonce }

    /// Verifies `payload` (a `SignedRequest`) for `target` (the provider named by the topic)
    /// and returns the inner request bytes and its nonce key.
    public func verify(_ payload: [UInt8], target: String) throws -> (request: [UInt8], nonce: String) {
        guard let envelope = try? JSONCoding.decoder.decode(SignedRequest.self, from: Data(payload)) else {
            throw VGWError(Self.unauthenticated, "remote requests must be signed (a SignedRequest envelope)")
        }
        let auth = envelope.auth
        guard let request = Base64.decode(envelope.request), let signature = Base64.decode(auth.signature) else {
            throw VGWError(Self.unauthenticated, "the envelope's request and signature must be base64")
        }
        guard auth.home == homeID || auth.home == "all" else {
            throw VGWError(Self.wrongHome, "signed for home \(auth.home), this is \(homeID)")
        }
        guard auth.provider == target else {
            throw VGWError(Self.wrongProvider, "signed by \(auth.provider) for \(target)'s endpoint")
        }
        guard let key = try publicKey(of: auth.provider) else {
            throw VGWError(Self.unauthenticated, "no key registered for \(auth.provider)")
        }
        let bytes = SignedRequest.signedBytes(
            home: auth.home, provider: auth.provider, timestamp: auth.timestamp, expires: auth.expires,
            nonce: auth.nonce, request: request)
        guard Ed25519.verify(signature: signature, message: bytes, publicKey: key) else {
            throw VGWError(Self.badSignature, "the signature does not match \(auth.provider)'s key")
        }
        let current = now()
        guard auth.expires >= auth.timestamp, auth.expires - auth.timestamp <= Self.maxWindow,
            auth.timestamp <= current + Self.skew
        else { throw VGWError(Self.expired, "the request's time window is not valid") }
        guard current <= auth.expires else {
            throw VGWError(Self.expired, "the request expired \(current - auth.expires) s ago")
        }
        guard (Base64.decode(auth.nonce)?.count ?? 0) >= 16 else {
            throw VGWError(Self.unauthenticated, "the nonce must be at least 16 random bytes")
        }
        guard try store.rememberNonce(Self.nonceKey(auth), until: auth.expires, now: current) else {
            throw VGWError(Self.replayed, "this request was already received")
        }
        return (request, Self.nonceKey(auth))
    }
}
