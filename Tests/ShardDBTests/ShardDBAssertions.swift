import Foundation
@testable import ShardDB
import XCTest

/// UTF-8 bytes of a string, for keys and values.
func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

/// The UTF-8 text of bytes, for readable assertions.
func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

extension ShardEngineOptions {
    /// Small buffers and the given clock, so tests are quick and never sleep.
    static func testing(clock: ManualClock = ManualClock()) -> ShardEngineOptions {
        var options = ShardEngineOptions()
        options.clock = clock
        options.writeBufferSize = 4 << 20
        options.tableSettings.blockCacheBytes = 4 << 20
        options.compression = .none
        return options
    }
}

extension ShardEngine {
    /// Drives the end of a migration by hand, as the coordinator does: the source's
    /// changes from `next` through `final` (the fence's sequence) applied here,
    /// then this target's commit.
    func catchUpAndCommit(_ plan: MigrationPlan, from source: ShardEngine, next: UInt64, final: UInt64) throws {
        var next = next
        while next <= final {
            let chunk = try source.readChanges(plan, from: next, maxRecords: 1000)
            try applyChanges(plan, chunk)
            next = chunk.nextSequence
        }
        try commitIncoming(plan, finalSequence: final)
    }

    /// Every live entry, by key, as a full scan sees it.
    func contents() throws -> [[UInt8]: [UInt8]] {
        var result: [[UInt8]: [UInt8]] = [:]
        try scan { entry in
            result[[UInt8](entry.key)] = [UInt8](entry.value)
            return true
        }
        return result
    }

    /// The keys of a scan, in the order it visits them.
    func keys(_ request: ScanRequest = ScanRequest()) throws -> [[UInt8]] {
        try entries(request).map(\.key)
    }

    /// The shard whose recorded range covers `key`, worked out from the shard
    /// map alone (independently of the engine's routing table).
    func recordedOwner(of key: [UInt8]) -> Int? {
        for shard in shardDescriptors where shard.state == .active {
            switch (partitioning, shard.range) {
            case let (.hash(k), .keyGroups(range)):
                if range.contains(key.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: k) }) { return shard.id }
            case let (.range, .keys(lower, upper)):
                let aboveLower = !key.lexicographicallyPrecedes(lower)
                let belowUpper = upper.map { key.lexicographicallyPrecedes($0) } ?? true
                if aboveLower && belowUpper { return shard.id }
            default:
                continue
            }
        }
        return nil
    }
}

extension XCTestCase {
    /// Asserts that `body` throws a ``ShardDBError`` with `code`; returns it for further checks.
    @discardableResult
    func assertShardDBError<R>(_ code: ShardDBError.Code, _ body: @autoclosure () throws -> R,
                               file: StaticString = #filePath, line: UInt = #line) -> ShardDBError? {
        do {
            _ = try body()
            XCTFail("expected ShardDBError .\(code), got no error", file: file, line: line)
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, code, "message: \(error.message)", file: file, line: line)
            return error
        } catch {
            XCTFail("expected ShardDBError .\(code), got \(error)", file: file, line: line)
        }
        return nil
    }

    /// A source of `shards` shards holding `keys` keys ("key-i"), an empty target
    /// beside it, and migration "m" of shard 0 prepared on the source (its bulk
    /// copy not yet opened). The caller closes both engines.
    func preparedMigration(in directory: TemporaryDirectory, shards: Int = 2, keys: Int,
                           value: (Int) -> String = { "value-\($0)" }) async throws -> (source: ShardEngine, target: ShardEngine, plan: MigrationPlan) {
        let source = try ShardEngine.create(at: directory.path("source"), shards: shards, options: .testing())
        let target = try ShardEngine.create(at: directory.path("target"), shards: 0, options: .testing())
        for i in 0..<keys { try source.put("key-\(i)", value(i)) }
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "m"))
        try source.prepareOutgoing(plan)
        return (source, target, plan)
    }

    /// Creates an engine in a fresh path inside `directory`.
    func makeEngine(in directory: TemporaryDirectory, name: String = "instance", shards: Int = 4,
                    partitioning: Partitioning = .hash(keyGroups: Partitioning.defaultKeyGroups),
                    defaultTTLSeconds: Int64? = nil, clock: ManualClock = ManualClock()) throws -> ShardEngine {
        try ShardEngine.create(at: directory.path(name), shards: shards, partitioning: partitioning,
                               defaultTTLSeconds: defaultTTLSeconds, options: .testing(clock: clock))
    }
}

/// Drives `plan` by hand up to its catch-up: prepared on both sides, the bulk
/// snapshot taken, every bulk chunk of up to `chunkBytes` read and applied
/// (`durable` as a server applies them; `applied` runs after each).
///
/// - returns: the bulk snapshot's sequence number.
func copyBulkByHand(_ plan: MigrationPlan, from source: ShardEngine, to target: ShardEngine, chunkBytes: Int = 1 << 20,
                    durable: Bool = false, applied: () throws -> Void = {}) throws -> UInt64 {
    try source.prepareOutgoing(plan)
    let snapshot = try source.openBulk(plan)
    _ = try target.prepareIncoming(plan, snapshotSequence: snapshot)
    var after: [UInt8]?
    while true {
        let chunk = try source.readBulk(plan, after: after, maxBytes: chunkBytes)
        try target.applyBulk(plan, [chunk], durable: durable)
        try applied()
        after = chunk.lastKey ?? after
        if chunk.done { return snapshot }
    }
}

/// A stop flag for a worker thread, and a way to wait until the worker saw it and finished.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let condition = NSCondition()
    private var flag = false
    private var finished = false

    var isSet: Bool { condition.lock(); defer { condition.unlock() }; return flag }
    func set() { condition.lock(); flag = true; condition.unlock() }
    func finish() { condition.lock(); finished = true; condition.broadcast(); condition.unlock() }
    func waitFinished() { condition.lock(); while !finished { condition.wait() }; condition.unlock() }
}
