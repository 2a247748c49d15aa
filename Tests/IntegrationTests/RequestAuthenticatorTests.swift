import Crypto
import Fleet
import Foundation
import Gateway
import Protocol
import Store
import Support
import TestSupport
import Testing

/// Signed remote requests: every way to get one wrong is refused, each with its own code.
@Suite struct RequestAuthenticatorTests {
    static let now: Int64 = 1_800_000_000

    func withAuthenticator(_ body: (RequestAuthenticator, Ed25519.KeyPair, String) throws -> Void) async throws {
        try await withTemporaryDirectory { dir in
            let store = try Store(path: dir.file("state.db"))
            let authenticator = RequestAuthenticator(store: store, homeID: "home-1", now: { Self.now })
            let keys = try Ed25519.KeyPair.generate()
            try authenticator.register(publicKey: keys.publicKey, for: "acme")
            try body(authenticator, keys, dir.file("state.db"))
        }
    }

    func envelope(_ signed: SignedRequest) throws -> [UInt8] { Array(try JSONCoding.encoder.encode(signed)) }

    let request = Array(#"{"id":"1","op":"bundle.list","replyTo":"r"}"#.utf8)

    @Test func aGoodRequestPassesOnceAndOnlyOnce() async throws {
        try await withAuthenticator { auth, keys, path in
            let signed = try RequestSigner.sign(
                request, home: "home-1", provider: "acme", keys: keys, now: Self.now)
            #expect(try auth.verify(try envelope(signed), target: "acme").request == request)
            #expect(throws: VGWError(RequestAuthenticator.replayed, "this request was already received")) {
                try auth.verify(try envelope(signed), target: "acme")
            }
            // The nonce cache is in the store: a restarted daemon refuses the replay too.
            let restarted = RequestAuthenticator(store: try Store(path: path), homeID: "home-1", now: { Self.now })
            #expect(throws: (any Error).self) { try restarted.verify(try envelope(signed), target: "acme") }
            let all = try RequestSigner.sign(request, home: "all", provider: "acme", keys: keys, now: Self.now)
            #expect(try auth.verify(try envelope(all), target: "acme").request == request)
        }
    }

    @Test func eachRefusalHasItsOwnCode() async throws {
        try await withAuthenticator { auth, keys, _ in
            func code(_ payload: [UInt8], target: String = "acme") -> VGWError.Code? {
                do {
                    _ = try auth.verify(payload, target: target)
                    return nil
                } catch {
                    return (error as? VGWError)?.code
                }
            }
            let forger = try Ed25519.KeyPair.generate()
            let forged = try RequestSigner.sign(
                request, home: "home-1", provider: "acme", keys: forger, now: Self.now)
            #expect(code(try envelope(forged)) == RequestAuthenticator.badSignature)

            var tampered = try RequestSigner.sign(
                request, home: "home-1", provider: "acme", keys: keys, now: Self.now)
            tampered.request = Base64.encode(Array(#"{"id":"1","op":"bundle.uninstall","replyTo":"r"}"#.utf8))
            #expect(code(try envelope(tampered)) == RequestAuthenticator.badSignature)

            let otherHome = try RequestSigner.sign(
                request, home: "home-2", provider: "acme", keys: keys, now: Self.now)
            #expect(code(try envelope(otherHome)) == RequestAuthenticator.wrongHome)

            let mine = try RequestSigner.sign(
                request, home: "home-1", provider: "acme", keys: keys, now: Self.now)
            #expect(code(try envelope(mine), target: "other") == RequestAuthenticator.wrongProvider)

            let stale = try RequestSigner.sign(
                request, home: "home-1", provider: "acme", keys: keys, validFor: 60, now: Self.now - 3600)
            #expect(code(try envelope(stale)) == RequestAuthenticator.expired)

            let unknown = try RequestSigner.sign(
                request, home: "home-1", provider: "ghost", keys: keys, now: Self.now)
            #expect(code(try envelope(unknown), target: "ghost") == RequestAuthenticator.unauthenticated)

            #expect(code(request) == RequestAuthenticator.unauthenticated)
            #expect(code(Array("garbage".utf8)) == RequestAuthenticator.unauthenticated)
        }
    }
}
