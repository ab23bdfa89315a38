import Foundation
import GRPCCore
import ShardDB

/// How a server authenticates to other instances when, as a migration target,
/// it pulls a bulk copy from the source itself (docs/TRANSPORT.md, "Direct bulk copy").
public struct PeerCredentials: Sendable {
    /// The token sent to the source; nil when a client certificate (`tls`) authenticates.
    public var secret: SharedSecret?
    /// TLS toward the source (and the client certificate to present).
    public var tls: ClientTLS?
    /// How long the source may take to answer the first call before the pull is
    /// refused (and the coordinator relays the chunks instead).
    public var probeWindow: Duration = .seconds(2)
    /// How long reading from the source keeps retrying transport failures (a
    /// source restarting) before the pull call fails.
    public var retryWindow: Duration = .seconds(30)

    public init(secret: SharedSecret?, tls: ClientTLS? = nil) {
        self.secret = secret
        self.tls = tls
    }
}

/// Lets one pull per migration run at a time: a coordinator that gave up on a
/// call (deadline, dropped connection) calls again, and the new call waits
/// until the old one has stopped writing.
actor PullGate {
    private var running: Set<String> = []
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func enter(_ id: String) async {
        while running.contains(id) {
            await withCheckedContinuation { waiters[id, default: []].append($0) }
        }
        running.insert(id)
    }

    func leave(_ id: String) {
        running.remove(id)
        if var queue = waiters[id], !queue.isEmpty {
            queue.removeFirst().resume()
            waiters[id] = queue.isEmpty ? nil : queue
        }
    }
}

extension ShardInstanceService {
    /// The target side of ``RemoteInstance/pullBulk(_:fromSourceAt:after:maxBytes:applied:)``:
    /// connects to the source, checks it is the plan's source, then applies up to
    /// `max_chunks` chunks read there (reading chunk n+1 while writing chunk n),
    /// reporting each once it is durable.
    func pullBulk(request: WirePullBulkRequest, response: RPCWriter<WirePullBulkProgress>, context: ServerContext) async throws {
        let plan = try plan(request.plan)
        guard let peers else {
            throw RPCError(code: .failedPrecondition, message: "this instance has no credentials for peers: it cannot pull from the source")
        }
        guard let address = InstanceAddress(parsing: request.sourceAddress) else {
            throw RPCError(code: .invalidArgument, message: "source address '\(request.sourceAddress)' is not HOST:PORT")
        }
        let maxBytes = Int(min(max(request.maxChunkBytes, 4096), 32 << 20))
        let maxChunks = max(1, Int(min(request.maxChunks, 4096)))
        await pullGate.enter(plan.id)
        defer { Task { await pullGate.leave(plan.id) } }

        // The first call with a short retry window: a source this instance cannot
        // reach or that refuses it makes the coordinator relay instead.
        var probeConfiguration = RemoteInstance.Configuration()
        probeConfiguration.retryWindow = peers.probeWindow
        probeConfiguration.callTimeout = min(probeConfiguration.callTimeout, peers.probeWindow * 2)
        let probe = try RemoteInstance(address: address, secret: peers.secret, tls: peers.tls, configuration: probeConfiguration)
        let sourceID: String
        do {
            sourceID = try await probe.describeInstance().instanceID
            await probe.close()
        } catch {
            await probe.close()
            throw RPCError(code: .failedPrecondition, message: "cannot reach the source at \(address) from this instance: \(error)")
        }
        guard sourceID == plan.sourceInstance else {
            throw RPCError(code: .failedPrecondition,
                           message: "\(address) is instance \(sourceID), not the source \(plan.sourceInstance) of migration \(plan.id)")
        }

        var configuration = RemoteInstance.Configuration()
        configuration.retryWindow = peers.retryWindow
        configuration.bulkChunksPerStream = maxChunks
        let source = try RemoteInstance(address: address, secret: peers.secret, tls: peers.tls, configuration: configuration)
        do {
            try await pull(plan, from: source, after: request.hasAfter ? [UInt8](request.after) : nil,
                           maxBytes: maxBytes, maxChunks: maxChunks, response: response)
            await source.close()
        } catch {
            await source.close()
            throw ErrorMapping.rpcError(error)
        }
    }

    private func pull(_ plan: MigrationPlan, from source: RemoteInstance, after start: [UInt8]?, maxBytes: Int, maxChunks: Int,
                      response: RPCWriter<WirePullBulkProgress>) async throws {
        @Sendable func read(_ after: [UInt8]?, _ wanted: Bool) async throws -> BulkChunk? {
            wanted ? try await source.readBulk(plan, after: after, maxBytes: maxBytes) : nil
        }
        var after = start
        var chunk = try await read(after, true)
        var applied = 0
        while let current = chunk {
            try Task.checkCancellation()
            after = current.lastKey ?? after
            applied += 1
            let from = after, wanted = !current.done && applied < maxChunks
            async let following = read(from, wanted)
            try await blocking { try engine.applyBulk(plan, current) }
            try await response.write(.with { progress in
                progress.keys = UInt64(current.count)
                progress.bytes = UInt64(current.bytes)
                if let lastKey = current.lastKey { progress.lastKey = Data(lastKey) }
                progress.done = current.done
            })
            chunk = try await following
        }
    }
}
