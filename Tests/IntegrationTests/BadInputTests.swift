import Foundation
import Gateway
import MQTT
import Protocol
import Support
import Testing

/// Hostile and broken requests on `mgmt/core/req` and `mgmt/<p>/req`: each gets an error
/// response with a code, and the daemon keeps serving.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BadInputTests {
    static func request(_ op: String, _ args: String) -> String {
        #"{"id":"bad","op":"\#(op)","args":\#(args),"replyTo":"r"}"#
    }

    /// (payload, expected code) sent raw on mgmt/core/req with a reply topic property.
    static let envelopes: [(String, VGWError.Code)] = [
        ("not json at all", .badJSON),
        ("", .badJSON),
        ("[1,2,3]", .badJSON),
        ("\"just a string\"", .badJSON),
        (#"{"id":"bad","op":"vgw.list","replyTo":"r""#, .badJSON),
        (#"{"op":"vgw.list","replyTo":"r"}"#, .invalidRequest),
        (#"{"id":7,"op":"vgw.list","replyTo":"r"}"#, .invalidRequest),
        (#"{"id":"bad","op":"vgw.list"}"#, .invalidRequest),
        (#"{"id":"bad","op":"vgw.list","replyTo":"a/b"}"#, .invalidRequest),
        (##"{"id":"bad","op":"vgw.list","replyTo":"#"}"##, .invalidRequest),
        (#"{"id":"bad","replyTo":"r"}"#, .invalidRequest),
        (#"{"id":"bad","op":42,"replyTo":"r"}"#, .invalidRequest),
        (#"{"id":"bad","op":"vgw.list","args":[1],"replyTo":"r"}"#, .invalidRequest),
        (#"{"id":"\#(String(repeating: "i", count: 65))","op":"vgw.list","replyTo":"r"}"#, .invalidRequest),
        (request("vgw.explode", "{}"), .unknownOp),
        (request("", "{}"), .unknownOp),
        (request("vgw.create", "{}"), .invalidArgument),
        (request("vgw.create", #"{"provider":42}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":null}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":["a"]}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"ok","extra":1}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"a/b"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"+"}"#), .invalidArgument),
        (request("vgw.create", ##"{"provider":"#"}"##), .invalidArgument),
        (request("vgw.create", #"{"provider":"core"}"#), .reserved),
        (request("vgw.create", #"{"provider":""}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"\#(String(repeating: "a", count: 200))"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"Acme"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"-acme"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"a b"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"$sys"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"a\u0000b"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"é"}"#), .invalidArgument),
        (request("vgw.create", #"{"provider":"existing"}"#), .alreadyExists),
        (request("vgw.delete", #"{"provider":"ghost"}"#), .notFound),
        (request("vgw.stop", #"{"provider":"ghost"}"#), .notFound),
        (request("client.add", #"{"provider":"existing","name":"a.b"}"#), .invalidArgument),
        (request("client.add", #"{"provider":"existing","name":"../x"}"#), .invalidArgument),
        (request("client.add", #"{"provider":"ghost","name":"x"}"#), .notFound),
        (request("client.add", #"{"provider":"existing"}"#), .invalidArgument),
        (request("client.remove", #"{"provider":"existing","name":"nobody"}"#), .notFound),
    ]

    @Test func malformedRequestsGetCodedErrorsAndTheDaemonKeepsServing() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("existing")
            for (template, code) in Self.envelopes {
                let payload = template.replacingOccurrences(
                    of: #""replyTo":"r""#, with: #""replyTo":"\#(gw.admin.replyTo)""#)
                let response = try await gw.admin.send(raw: Array(payload.utf8))
                #expect(response.ok == false, "\(payload)")
                #expect(response.error?.code == code, "\(payload): got \(String(describing: response.error))")
                #expect(response.home == "test-home")
                #expect(response.id == Self.expectedID(payload), "\(payload)")
            }
            // Nothing above changed the state, and the daemon still answers.
            let list = try await gw.admin.call("vgw.list")
            #expect(list["providers"]?.arrayValue?.map { $0["provider"]?.stringValue } == ["existing"])
        }
    }

    @Test func oversizedRequestIsRefused() async throws {
        try await GatewayFixture.with { gw in
            let padding = String(repeating: "x", count: 2 << 20)
            let payload = #"{"id":"big","op":"vgw.list","args":{"pad":"\#(padding)"},"replyTo":"\#(gw.admin.replyTo)"}"#
            let response = try await gw.admin.send(raw: Array(payload.utf8))
            #expect(response.error?.code == .tooLarge)
            #expect(try await gw.admin.call("vgw.list")["providers"] == [])
        }
    }

    @Test func providersSeeOnlyTheirOwnVGWThroughTheirTopic() async throws {
        try await GatewayFixture.with { gw in
            try await gw.createProvider("a")
            try await gw.createProvider("b")
            let b = try await gw.providerManagement(try await gw.addClient("b", "app"))
            // Operator-only ops do not exist for a provider.
            for op in ["vgw.create", "vgw.delete", "vgw.stop", "vgw.list", "client.add", "gateway.status"] {
                let response = try await b.send(op, ["provider": "b"])
                #expect(response.error?.code == .unknownOp, "\(op)")
            }
            // Another provider, existing or not, is answered alike: not found.
            let existing = try await b.send("vgw.show", ["provider": "a"])
            let missing = try await b.send("vgw.show", ["provider": "zz"])
            #expect(existing.error?.code == .notFound && missing.error?.code == .notFound)
            #expect(existing.error?.message == "no virtual gateway a")
            #expect(missing.error?.message == "no virtual gateway zz")
            let own = try await b.call("client.list")
            #expect(own["clients"]?.arrayValue?.map { $0["username"]?.stringValue } == ["b.app"])
            await b.close()
        }
    }

    /// The id the daemon can read back from a payload, which is what its error response carries.
    static func expectedID(_ payload: String) -> String? {
        guard let data = payload.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let id = object["id"] as? String, id.utf8.count <= 64
        else { return nil }
        return id
    }
}
