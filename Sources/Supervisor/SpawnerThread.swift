import Foundation
import Synchronization

/// The one thread that forks every child, living as long as the process.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
/// A spawn from a Swift task or a Dispatch queue would run on a pool thread that the
/// runtime may retire at any time, killing the child with it; this thread never exits.
final class SpawnerThread: Sendable {
    static let shared = SpawnerThread()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let available = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            while true {
                available.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "spawner"
        thread.start()
    }

    /// Runs `body` on the spawner thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            jobs.withLock { $0.append { continuation.resume(returning: body()) } }
            available.signal()
        }
    }
}
