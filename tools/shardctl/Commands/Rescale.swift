import ArgumentParser
import Foundation
import ShardDB

struct Rescale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Spread the key groups of some instances evenly over another set of instances.",
        discussion: """
            Plans the moves (each target ends up owning one contiguous slice of the key groups, \
            balanced, assigned so the least state moves) and runs them as live migrations, a few at \
            a time. Every instance that owns state now must be listed in --from; --to lists the \
            instances that own everything afterwards (they may overlap --from). A --to directory \
            that does not exist is created empty with the same partitioning. Hash partitioning only.
            """)

    @Option(help: "Comma-separated directories of the instances that own the state now.") var from: String
    @Option(help: "Comma-separated directories of the instances that should own it.") var to: String
    @Option(help: "Moves running at once.") var parallelism = 2
    @Flag(name: .customLong("dry-run"), help: "Print the plan without moving anything.") var dryRun = false
    @Flag(help: "Print the plan and reports as JSON.") var json = false

    func run() async throws {
        let fromDirs = from.split(separator: ",").map(String.init)
        let toDirs = to.split(separator: ",").map(String.init)
        let engines: [String: ShardEngine] = try failing {
            guard !fromDirs.isEmpty, !toDirs.isEmpty else { throw ShardDBError(.invalidArgument, "--from and --to need at least one directory each") }
            guard parallelism > 0 else { throw ShardDBError(.invalidArgument, "--parallelism must be positive") }
            var opened: [String: ShardEngine] = [:]
            do {
                for dir in fromDirs where opened[dir] == nil { opened[dir] = try ShardEngine.open(at: dir) }
                let partitioning = opened[fromDirs[0]]!.partitioning
                for dir in toDirs where opened[dir] == nil {
                    if FileManager.default.fileExists(atPath: dir + "/CURRENT") || dryRun {
                        opened[dir] = try ShardEngine.open(at: dir)
                    } else {
                        opened[dir] = try ShardEngine.create(at: dir, shards: 0, partitioning: partitioning)
                    }
                }
            } catch {
                opened.values.forEach { $0.close() }
                throw error
            }
            return opened
        }
        defer { engines.values.forEach { $0.close() } }
        let plan = try failing {
            try RescalePlanner.plan(current: try fromDirs.map { try engines[$0]!.describeInstance() },
                                    targets: try toDirs.map { try engines[$0]!.describeInstance() })
        }
        if json && dryRun { printJSON(plan, pretty: true); return }
        if !json {
            print("plan: \(plan.moves.count) moves, \(plan.keyGroupsMoved) key groups change owner")
            for move in plan.moves { print("  \(move.fromLocation) shard \(move.shard) \(move.range) -> \(move.toLocation)") }
            for dir in toDirs { print("  \(dir) will own \(plan.finalRanges[engines[dir]!.instanceID].map { "\($0)" } ?? "-")") }
        }
        if dryRun { return }
        let progress = ProgressLine()
        do {
            let reports = try await RescaleExecutor(engines: Array(engines.values), parallelism: parallelism).run(plan) { move, p in
                progress.update("\(move.range) -> \(move.toLocation): \(p.phase.rawValue), \(p.keysCopied) keys, lag \(p.lag)")
            }
            progress.finish()
            if json {
                printJSON(RescaleResult(plan: plan, reports: reports), pretty: true)
            } else {
                let pauses = reports.map(\.pauseMilliseconds).sorted()
                print(String(format: "done: %d moves, %d keys copied; write pause max %.2f ms", reports.count,
                             reports.reduce(0) { $0 + $1.keysCopied }, pauses.last ?? 0))
            }
        } catch {
            progress.finish()
            fail("\(error)")
        }
    }

    struct RescaleResult: Encodable {
        var plan: RescalePlan
        var reports: [MigrationReport]
    }
}
