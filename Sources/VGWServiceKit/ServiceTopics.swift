import MQTT
import Support

/// The rules for topics relative to a provider's namespace.
///
/// The broker already confines a service to `vgw/<provider>/#`, so these checks are not
/// the security boundary; they turn a mistake (a topic that would leave the namespace and
/// be silently dropped or refused by the broker) into an immediate, explained error.
public enum ServiceTopics {
    /// The full topic name for publishing `relative` under `prefix`.
    ///
    /// Refuses: an empty topic, empty levels (a leading `/` or `a//b`), levels made only of
    /// dots (`.`, `..`), `$` anywhere, NUL, and the wildcards `+` and `#`.
    public static func name(_ relative: String, prefix: String) throws(VGWError) -> String {
        try checkLevels(relative, wildcards: false)
        let full = prefix + relative
        guard Topic.isValidName(full) else {
            throw VGWError(.invalidArgument, "topic \(relative.debugDescription) is not a valid topic name")
        }
        return full
    }

    /// The full subscription filter for `relative` under `prefix`: the same rules as for
    /// names, except that `+` (a whole level) and `#` (the whole last level) are allowed.
    public static func filter(_ relative: String, prefix: String) throws(VGWError) -> String {
        try checkLevels(relative, wildcards: true)
        let full = prefix + relative
        guard Topic.isValidFilter(full) else {
            throw VGWError(
                .invalidArgument,
                "filter \(relative.debugDescription) is not a valid filter (+ only as a whole level, # only as the last)"
            )
        }
        return full
    }

    /// `topic` without `prefix`, or nil when it lies outside the namespace.
    public static func relative(_ topic: String, prefix: String) -> String? {
        guard topic.hasPrefix(prefix), topic.count > prefix.count else { return nil }
        return String(topic.dropFirst(prefix.count))
    }

    private static func checkLevels(_ relative: String, wildcards: Bool) throws(VGWError) {
        func refuse(_ why: String) -> VGWError {
            VGWError(.invalidArgument, "topic \(relative.debugDescription) \(why)")
        }
        guard !relative.isEmpty else { throw refuse("is empty") }
        guard !relative.hasPrefix("/") else {
            throw refuse("starts with /: topics are relative to the provider's namespace")
        }
        guard !relative.contains("$") else { throw refuse("contains $, which is reserved for the broker") }
        guard !relative.utf8.contains(0) else { throw refuse("contains a NUL character") }
        if !wildcards, relative.contains("+") || relative.contains("#") {
            throw refuse("contains a wildcard (+ or #), which a published topic cannot have")
        }
        for level in relative.split(separator: "/", omittingEmptySubsequences: false) {
            guard !level.isEmpty else { throw refuse("has an empty level") }
            guard !level.allSatisfy({ $0 == "." }) else {
                throw refuse("has a level \(String(level).debugDescription), which looks like a path escape")
            }
        }
    }
}
