/// Waits for the first element of `stream` that matches, or nil after `limit`: every wait
/// on an event in the tests is bounded.
public func firstMatch<Element: Sendable>(
    _ stream: AsyncStream<Element>, within limit: Duration = .seconds(10),
    where match: @escaping @Sendable (Element) -> Bool
) async -> Element? {
    await withTaskGroup(of: Element?.self) { group in
        group.addTask {
            for await element in stream where match(element) { return element }
            return nil
        }
        group.addTask {
            try? await Task.sleep(for: limit)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
