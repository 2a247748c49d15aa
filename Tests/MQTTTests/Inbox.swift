import Synchronization

struct InboxTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Consumes an `AsyncStream` in the background so that a test can await its next element
/// with a bound, instead of sleeping and hoping.
final class Inbox<Element: Sendable>: Sendable {
    private struct State {
        var buffer: [Element] = []
        var waiter: (id: Int, continuation: CheckedContinuation<Element, any Error>)?
        var nextID = 0
        var finished = false
        /// Timers that fired before their waiter registered.
        var expired: Set<Int> = []
    }

    private let state = Mutex(State())

    init(_ stream: AsyncStream<Element>) {
        // Holds the inbox until the stream finishes (the client's `disconnect()` or deinit).
        Task {
            for await element in stream {
                self.state.withLock { state in
                    if let waiter = state.waiter {
                        state.waiter = nil
                        waiter.continuation.resume(returning: element)
                    } else {
                        state.buffer.append(element)
                    }
                }
            }
            self.state.withLock { state in
                state.finished = true
                if let waiter = state.waiter {
                    state.waiter = nil
                    waiter.continuation.resume(throwing: InboxTimeout(description: "stream finished"))
                }
            }
        }
    }

    /// The next element, or an error after `timeout`.
    func next(within timeout: Duration = .seconds(5)) async throws -> Element {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.state.withLock { state in
                if let waiter = state.waiter, waiter.id == id {
                    state.waiter = nil
                    waiter.continuation.resume(
                        throwing: InboxTimeout(description: "nothing within \(timeout)"))
                } else {
                    state.expired.insert(id)
                }
            }
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            state.withLock { state in
                if !state.buffer.isEmpty {
                    continuation.resume(returning: state.buffer.removeFirst())
                } else if state.finished || state.expired.remove(id) != nil {
                    continuation.resume(throwing: InboxTimeout(description: "stream finished"))
                } else {
                    state.waiter = (id, continuation)
                }
            }
        }
    }

    /// Skips elements until one satisfies `predicate`; bounded by `timeout` overall.
    func first(
        within timeout: Duration = .seconds(5), where predicate: (Element) -> Bool
    ) async throws -> Element {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw InboxTimeout(description: "no matching element within \(timeout)")
            }
            let element = try await next(within: remaining)
            if predicate(element) { return element }
        }
    }

    /// Whether the stream has ended and everything was consumed.
    func waitForEnd(within timeout: Duration = .seconds(5)) async -> Bool {
        while true {
            do {
                _ = try await next(within: timeout)
            } catch {
                return state.withLock { $0.finished && $0.buffer.isEmpty }
            }
        }
    }
}
