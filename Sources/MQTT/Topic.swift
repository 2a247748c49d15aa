/// Pure helpers for MQTT topic names and filters (MQTT 5 §4.7, same rules in 3.1.1).
///
/// They live here, next to the client, because every module that accepts a topic from
/// outside (a provider, the CLI, a request payload) must validate it with the same rules
/// the broker applies; a filter that the broker would reject should be refused before
/// it is sent, with a clear error, not a dropped connection.
public enum Topic {
    /// The longest topic the protocol can carry: a two-byte length prefix.
    public static let maxLength = 65535

    /// Whether `topic` (a concrete topic name) matches `filter` (which may hold wildcards).
    ///
    /// - `+` matches exactly one level (which may be empty);
    /// - `#` matches the parent level and any number of levels below it;
    /// - topics starting with `$` (`$SYS/...`, `$CONTROL/...`) are not matched by a filter
    ///   whose first level is a wildcard, so that `#` does not leak broker internals.
    ///
    /// An invalid filter or topic name matches nothing.
    public static func matches(filter: String, topic: String) -> Bool {
        guard isValidFilter(filter), isValidName(topic) else { return false }
        let filterLevels = filter.split(separator: "/", omittingEmptySubsequences: false)
        let topicLevels = topic.split(separator: "/", omittingEmptySubsequences: false)
        if topic.hasPrefix("$"), let first = filterLevels.first, first == "+" || first == "#" {
            return false
        }
        var index = 0
        while index < filterLevels.count {
            let level = filterLevels[index]
            if level == "#" {
                // `a/#` also matches `a` itself: `#` includes the parent level.
                return true
            }
            guard index < topicLevels.count else { return false }
            if level != "+" && level != topicLevels[index] {
                return false
            }
            index += 1
        }
        return index == topicLevels.count
    }

    /// Whether `filter` is a valid subscription filter: not empty, at most 65535 bytes of
    /// UTF-8, no NUL, `+` only as a whole level and `#` only as the whole last level.
    public static func isValidFilter(_ filter: String) -> Bool {
        guard hasValidLength(filter), !filter.utf8.contains(0) else { return false }
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        for (index, level) in levels.enumerated() {
            if level.contains("#") && (level != "#" || index != levels.count - 1) {
                return false
            }
            if level.contains("+") && level != "+" {
                return false
            }
        }
        return true
    }

    /// Whether `name` is a valid topic name to publish to: not empty, at most 65535 bytes
    /// of UTF-8, no NUL and no wildcard characters.
    public static func isValidName(_ name: String) -> Bool {
        hasValidLength(name)
            && !name.utf8.contains(where: {
                $0 == 0 || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#")
            })
    }

    private static func hasValidLength(_ value: String) -> Bool {
        let count = value.utf8.count
        return count > 0 && count <= maxLength
    }
}
