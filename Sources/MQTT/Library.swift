import CMosquitto
import Support

/// The one place where libmosquitto return codes become errors.
enum Library {
    /// `mosquitto_lib_init` must run exactly once per process, before the first
    /// `mosquitto_new`; a lazily initialised static gives that for free, thread-safely.
    static let initialized: Int32 = mosquitto_lib_init()

    static let success = Int32(MOSQ_ERR_SUCCESS.rawValue)

    /// Throws `VGWError(.mqtt, "<what>: <mosquitto_strerror>")` unless `rc` is success.
    static func check(_ rc: Int32, _ what: String) throws(VGWError) {
        guard rc != success else { return }
        throw VGWError(.mqtt, "\(what): \(errorText(rc))", cause: LibraryError(code: rc))
    }

    static func errorText(_ rc: Int32) -> String {
        guard let text = mosquitto_strerror(rc) else { return "error \(rc)" }
        return lowercasedSentence(String(cString: text))
    }
}

/// A libmosquitto error number (`MOSQ_ERR_*`), kept as the cause of a `VGWError`.
public struct LibraryError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int32
    public var description: String { "libmosquitto error \(code)" }
}

/// The text libmosquitto has for an MQTT 5 reason code.
func libraryReasonString(_ value: Int) -> String {
    guard let text = mosquitto_reason_string(Int32(value)) else { return "reason code \(value)" }
    return String(cString: text)
}
