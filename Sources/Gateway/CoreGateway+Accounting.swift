import Protocol
import Support

extension CoreGateway {
    /// `perf.get`, `acct.notify`, `acct.usage` for one provider (the caller's own, or the
    /// one the operator names). Arguments other than `provider` are checked here.
    func accounting(_ op: ManagementOperation, provider: ProviderID, args: Arguments) async throws -> JSONValue {
        throw VGWError(.unknownOp, "\(op.rawValue) is not available yet")
    }
}
