import Dispatch
import Support

#if canImport(FoundationEssentials)
    // Not all of Foundation: it would link ICU into a static service (see Support's Logger).
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

extension VGWService {
    /// How long `run` lets the body wind down after SIGTERM before disconnecting anyway.
    /// Shorter than vgwd's default stop grace (5 s), after which it sends SIGKILL.
    public static let shutdownGrace: Duration = .seconds(3)

    /// The entry point of a service: connects, runs `body`, and exits.
    ///
    /// SIGTERM (how vgwd stops a service) and SIGINT cancel the body's task; the body should
    /// end on cancellation (for `await` loops over subscriptions and `Task.sleep` do so by
    /// themselves). `run` waits up to `shutdownGrace` for it, clears the online flag,
    /// disconnects cleanly and exits 0: a stop by request is not a failure, so the
    /// supervisor's `on-failure` policy leaves it stopped.
    ///
    /// It exits 1 when the environment is incomplete, the first connection fails, the body
    /// throws, or the broker refuses a reconnect (the identity was revoked: only a restart by
    /// vgwd, with a fresh identity, can help). It exits 0 when the body returns.
    public static func run(
        environment: ServiceEnvironment? = nil, _ body: @escaping @Sendable (VGWService) async throws -> Void
    ) async -> Never {
        let logger = Logger("service")
        let (outcomes, outcome) = AsyncStream.makeStream(of: Outcome.self)
        // Signals become events on `outcomes`; the default actions are turned off first so that
        // a signal arriving during start-up is not lost or fatal.
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { outcome.yield(.signal(number)) }
            source.resume()
            sources.append(source)
        }
        let service: VGWService
        do {
            let environment = try environment ?? ServiceEnvironment.current()
            service = try await connect(environment: environment)
            logger.info("connected", ["bundle": environment.bundle, "prefix": environment.topicPrefix])
        } catch {
            logger.error("cannot start the service", ["error": "\(error)"])
            exit(1)
        }
        let work = Task {
            do {
                try await body(service)
                outcome.yield(.finished(nil))
            } catch {
                outcome.yield(.finished(error))
            }
        }
        let refusals = service.refusals
        let refusalWatch = Task {
            for await error in refusals { outcome.yield(.refused(error)) }
        }
        var status: Int32 = 0
        var stopping = false
        loop: for await event in outcomes {
            switch event {
            case .finished(nil):
                break loop
            case .finished(let error?):
                if !stopping || !(error is CancellationError) {
                    logger.error("the service failed", ["error": "\(error)"])
                    status = stopping ? status : 1
                }
                break loop
            case .signal(let number):
                guard !stopping else { continue }
                stopping = true
                logger.info("stopping", ["signal": number == SIGTERM ? "SIGTERM" : "SIGINT"])
                work.cancel()
                Task {
                    try? await Task.sleep(for: shutdownGrace)
                    outcome.yield(.graceExpired)
                }
            case .graceExpired:
                logger.warning("the service did not end within \(shutdownGrace) of SIGTERM; disconnecting anyway")
                break loop
            case .refused(let error):
                logger.error("giving up: \(error)")
                status = 1
                work.cancel()
                break loop
            }
        }
        refusalWatch.cancel()
        await service.disconnect()
        for source in sources { source.cancel() }
        exit(status)
    }

    private enum Outcome: Sendable {
        case finished((any Error)?)
        case signal(Int32)
        case graceExpired
        case refused(VGWError)
    }
}
