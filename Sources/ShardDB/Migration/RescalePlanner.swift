import Foundation
import Logging

/// One step of a rescale: move `range` of `shard` from one instance to another.
public struct RescaleMove: Sendable, Equatable, Codable {
    public var fromInstance: String
    public var fromLocation: String
    public var shard: Int
    public var range: ShardRange
    public var toInstance: String
    public var toLocation: String
    public var keyGroups: Int {
        if case .keyGroups(let r) = range { return r.count }
        return 0
    }
}

/// A rescale: the moves, and the key groups each target instance ends up owning.
public struct RescalePlan: Sendable, Equatable, Codable {
    public var moves: [RescaleMove]
    /// Target instance id -> its key-group range after the rescale.
    public var finalRanges: [String: KeyGroupRange]
    /// Key groups that change owner (the amount of state moved, in key groups).
    public var keyGroupsMoved: Int
}

/// Computes how to go from the shard maps of some instances to an even split
/// of the key groups over a (possibly different) set of instances.
///
/// Each target instance ends up owning one contiguous slice of the key groups
/// (balanced: sizes differ by at most one). Slices are assigned to instances to
/// keep as many key groups where they are as possible (an exact assignment for
/// up to 8 targets, greedy beyond), so the least state moves. Moves out of one
/// source shard are ordered from its ends inwards, because a migration takes a
/// range at one end of a shard.
public enum RescalePlanner {
    /// - parameters:
    ///   - current: every instance that owns state now (sources, and targets that already hold some).
    ///   - targets: the instances that should own all key groups afterwards.
    /// - throws: `.invalidArgument` for range partitioning, mismatched key groups,
    ///   key groups nobody owns, or no targets.
    public static func plan(current: [InstanceDescription], targets: [InstanceDescription]) throws -> RescalePlan {
        guard !targets.isEmpty else { throw ShardDBError(.invalidArgument, "rescale needs at least one target instance") }
        guard case .hash(let k) = (current.first ?? targets[0]).partitioning else {
            throw ShardDBError(.invalidArgument, "rescale plans key groups: it needs hash partitioning")
        }
        for instance in current + targets where instance.partitioning != .hash(keyGroups: k) {
            throw ShardDBError(.invalidArgument, "\(instance.location) is partitioned as \(instance.partitioning), not hash(\(k) key groups)")
        }
        // Who owns each key group now: (instance index in `all`, shard id).
        var all: [InstanceDescription] = []
        for instance in current + targets where !all.contains(where: { $0.instanceID == instance.instanceID }) { all.append(instance) }
        var owner = [(instance: Int, shard: Int)?](repeating: nil, count: k)
        for (index, instance) in all.enumerated() {
            for shard in instance.shards where shard.state == .active {
                guard case .keyGroups(let r) = shard.range else { continue }
                guard r.lowerBound >= 0, r.upperBound <= k else {
                    throw ShardDBError(.invalidArgument, "shard \(shard.id) of \(instance.location) owns key groups \(r), outside 0..<\(k)")
                }
                for kg in r.lowerBound..<r.upperBound {
                    if owner[kg] != nil {
                        throw ShardDBError(.invalidArgument, "key group \(kg) is owned twice (\(instance.location) and \(all[owner[kg]!.instance].location))")
                    }
                    owner[kg] = (index, shard.id)
                }
            }
        }
        if let missing = owner.firstIndex(where: { $0 == nil }) {
            throw ShardDBError(.invalidArgument, "key group \(missing) is owned by none of the given instances; list every instance that holds state")
        }
        let m = targets.count
        let slices = (0..<m).map { KeyGroupRange($0 * k / m, ($0 + 1) * k / m) }
        let targetIndex = targets.map { t in all.firstIndex { $0.instanceID == t.instanceID }! }
        // overlap[i][j]: key groups of slice j that target i already owns.
        let overlap = targetIndex.map { ti in slices.map { s in (s.lowerBound..<s.upperBound).filter { owner[$0]!.instance == ti }.count } }
        let assignment = assign(overlap)  // assignment[i] = slice of target i

        var finalRanges: [String: KeyGroupRange] = [:]
        var runs: [(from: Int, shard: Int, range: KeyGroupRange, to: Int)] = []
        var moved = 0
        for (i, target) in targets.enumerated() {
            let slice = slices[assignment[i]]
            finalRanges[target.instanceID] = slice
            var kg = slice.lowerBound
            while kg < slice.upperBound {
                let o = owner[kg]!
                var end = kg + 1
                while end < slice.upperBound, let next = owner[end], next.instance == o.instance, next.shard == o.shard { end += 1 }
                if o.instance != targetIndex[i] {
                    runs.append((o.instance, o.shard, KeyGroupRange(kg, end), targetIndex[i]))
                    moved += end - kg
                }
                kg = end
            }
        }
        // Order the runs of each source shard from its ends inwards.
        var moves: [RescaleMove] = []
        let grouped = Dictionary(grouping: runs) { "\($0.from)/\($0.shard)" }
        for key in grouped.keys.sorted() {
            var pending = grouped[key]!
            let first = pending[0]
            guard case .keyGroups(var remaining)? = all[first.from].shards.first(where: { $0.id == first.shard })?.range else { continue }
            while !pending.isEmpty {
                guard let index = pending.firstIndex(where: { $0.range.upperBound == remaining.upperBound || $0.range.lowerBound == remaining.lowerBound }) else {
                    throw ShardDBError(.invalidArgument, "internal: cannot order the moves out of shard \(first.shard)")
                }
                let run = pending.remove(at: index)
                if run.range.upperBound == remaining.upperBound {
                    remaining = KeyGroupRange(remaining.lowerBound, run.range.lowerBound)
                } else {
                    remaining = KeyGroupRange(run.range.upperBound, remaining.upperBound)
                }
                moves.append(RescaleMove(fromInstance: all[run.from].instanceID, fromLocation: all[run.from].location,
                                         shard: run.shard, range: .keyGroups(run.range),
                                         toInstance: all[run.to].instanceID, toLocation: all[run.to].location))
            }
        }
        return RescalePlan(moves: moves, finalRanges: finalRanges, keyGroupsMoved: moved)
    }

    /// The slice for each target that maximizes the total kept: exact for up to 8 targets, greedy beyond.
    static func assign(_ overlap: [[Int]]) -> [Int] {
        let m = overlap.count
        if m <= 8 {
            var best = Array(0..<m), bestScore = -1
            var permutation = Array(0..<m)
            func search(_ depth: Int) {
                if depth == m {
                    let score = (0..<m).reduce(0) { $0 + overlap[$1][permutation[$1]] }
                    if score > bestScore { bestScore = score; best = permutation }
                    return
                }
                for i in depth..<m {
                    permutation.swapAt(depth, i)
                    search(depth + 1)
                    permutation.swapAt(depth, i)
                }
            }
            search(0)
            return best
        }
        var taken = Set<Int>(), result = [Int](repeating: 0, count: m)
        let order = (0..<m).sorted { overlap[$0].max()! > overlap[$1].max()! }
        for i in order {
            let j = (0..<m).filter { !taken.contains($0) }.max { overlap[i][$0] < overlap[i][$1] }!
            result[i] = j
            taken.insert(j)
        }
        return result
    }
}

/// Runs a rescale plan over instances: engines open in this process, or
/// remote ones (any ``MigrationSource`` that is also a ``MigrationTarget``).
public struct RescaleExecutor: Sendable {
    public typealias Endpoint = any MigrationSource & MigrationTarget
    /// By instance id.
    public let endpoints: [String: Endpoint]
    /// How many moves run at once.
    public var parallelism = 2
    /// Where the migrations log (their coordinator's logger).
    public var logger = Logger(label: "sharddb.migration")

    public init(engines: [ShardEngine], parallelism: Int = 2) {
        self.init(endpoints: Dictionary(engines.map { ($0.instanceID, $0 as Endpoint) }, uniquingKeysWith: { a, _ in a }),
                  parallelism: parallelism)
    }

    /// - parameter endpoints: every instance of the plan, by instance id.
    public init(endpoints: [String: Endpoint], parallelism: Int = 2) {
        self.endpoints = endpoints
        self.parallelism = max(1, parallelism)
    }

    /// Runs the moves, up to `parallelism` at once. Moves out of one source
    /// shard run in plan order (each takes an end of what is left); two moves
    /// into one target never overlap (a target picks shard ids and merges one
    /// move at a time). A move merges into an adjacent shard of its target when
    /// there is one that the plan moves nothing more out of, else creates a shard.
    public func run(_ plan: RescalePlan, progress: @escaping @Sendable (RescaleMove, MigrationProgress) -> Void = { _, _ in })
        async throws -> [MigrationReport] {
        var laneOrder: [String] = []
        var lanes: [String: [RescaleMove]] = [:]
        for move in plan.moves {
            let lane = "\(move.fromInstance)/\(move.shard)"
            if lanes[lane] == nil { laneOrder.append(lane) }
            lanes[lane, default: []].append(move)
        }
        let targets = TargetLocks()
        let lanesLeft = LanesLeft(laneOrder)
        let endpoints = self.endpoints
        return try await withThrowingTaskGroup(of: [MigrationReport].self) { group in
            var reports: [MigrationReport] = []
            var next = 0
            func startLane(_ lane: String) {
                let moves = lanes[lane]!
                group.addTask {
                    var done: [MigrationReport] = []
                    for move in moves {
                        guard let source = endpoints[move.fromInstance], let target = endpoints[move.toInstance] else {
                            throw ShardDBError(.invalidArgument, "instance of move \(move.range) is not open")
                        }
                        await targets.acquire(move.toInstance)
                        do {
                            var request = MigrationRequest(shard: move.shard, range: move.range)
                            for shard in try await target.describeInstance().shards
                            where shard.state == .active && shard.range.merged(with: move.range) != nil {
                                // Not into a shard whose own moves out are still to come: the
                                // source refuses to move a shard out whole (or at the end a
                                // merge grows) while it takes a merge, and the rescale would fail.
                                if await !lanesLeft.contains("\(move.toInstance)/\(shard.id)") {
                                    request.mergeInto = shard.id
                                    break
                                }
                            }
                            var coordinator = MigrationCoordinator(source: source, target: target)
                            coordinator.logger = logger
                            done.append(try await coordinator.migrate(request) { progress(move, $0) })
                            await targets.release(move.toInstance)
                        } catch {
                            await targets.release(move.toInstance)
                            throw error
                        }
                    }
                    await lanesLeft.finish(lane)
                    return done
                }
            }
            while next < min(parallelism, laneOrder.count) { startLane(laneOrder[next]); next += 1 }
            while let finished = try await group.next() {
                reports += finished
                if next < laneOrder.count { startLane(laneOrder[next]); next += 1 }
            }
            return reports
        }
    }
}

/// The lanes (`instance/shard` moving out) of a rescale not finished yet.
actor LanesLeft {
    private var left: Set<String>
    init(_ lanes: [String]) { left = Set(lanes) }
    func contains(_ lane: String) -> Bool { left.contains(lane) }
    func finish(_ lane: String) { left.remove(lane) }
}

/// One move at a time into each target instance.
actor TargetLocks {
    private var busy = Set<String>()
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func acquire(_ target: String) async {
        if busy.insert(target).inserted { return }
        await withCheckedContinuation { waiters[target, default: []].append($0) }
    }

    func release(_ target: String) {
        if var queue = waiters[target], !queue.isEmpty {
            let next = queue.removeFirst()
            waiters[target] = queue
            next.resume()  // ownership passes straight to the next waiter
        } else {
            busy.remove(target)
        }
    }
}
