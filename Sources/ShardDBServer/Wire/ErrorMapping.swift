import Dispatch
import GRPCCore
import ShardDB

/// ShardDB errors cross the wire as gRPC status codes plus two metadata
/// entries, so the client rebuilds the same ``ShardDBError`` (code, message,
/// new owner) the engine threw.
enum ErrorMapping {
    static let codeKey = "sharddb-error-code"
    static let ownerKey = "sharddb-owner"

    static func rpcError(_ error: Error) -> RPCError {
        if let rpc = error as? RPCError { return rpc }
        guard let error = error as? ShardDBError else {
            return RPCError(code: .internalError, message: "\(error)")
        }
        var metadata = Metadata()
        metadata.addString(error.code.rawValue, forKey: codeKey)
        if let owner = error.owner { metadata.addString(owner, forKey: ownerKey) }
        let code: RPCError.Code
        switch error.code {
        case .invalidKey, .invalidValue, .invalidTTL, .invalidArgument: code = .invalidArgument
        case .keyNotOwned, .migrationConflict, .changelogGap, .changelogUnavailable: code = .failedPrecondition
        case .shardNotFound, .instanceNotFound: code = .notFound
        case .migrationInProgress, .closed: code = .unavailable
        case .corruptedValue, .corruptedMetadata: code = .dataLoss
        default: code = .internalError
        }
        return RPCError(code: code, message: error.message, metadata: metadata)
    }

    /// The engine's error when the peer sent one; nil for transport failures.
    static func shardDBError(_ error: RPCError) -> ShardDBError? {
        guard let raw = error.metadata[stringValues: codeKey].first(where: { _ in true }),
              let code = ShardDBError.Code(rawValue: raw) else { return nil }
        return ShardDBError(code, error.message, owner: error.metadata[stringValues: ownerKey].first(where: { _ in true }))
    }
}

/// Runs a blocking engine call off the cooperative pool (which has a thread
/// per core): a put waiting on a fence must not starve the calls that lift it.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}
