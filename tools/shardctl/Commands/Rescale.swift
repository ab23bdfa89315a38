import ArgumentParser
import Foundation
import ShardDB
import ShardDBServer

struct Rescale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Spread the key groups of some instances evenly over another set of instances.",
        discussion: """
            Plans the moves (each target ends up owning one contiguous slice of the key groups, \
            balanced, assigned so the least state moves) and runs them as live migrations, a few at \
            a time. Every instance that owns state now must be listed in --from; --to lists the \
            instances that own everything afterwards (they may overlap --from). A --to directory \
            that does not exist (or is empty) is created empty with the same partitioning; one \
            holding other files is refused. Hash partitioning only.

            Each instance is a directory or HOST:PORT of a live instance ('shardctl serve', with \
            --token-file or the --tls-* options); live instances are rescaled while they serve.
            """)

    @Option(help: "Comma-separated instances (directories or HOST:PORT) that own the state now.") var from: String
    @Option(help: "Comma-separated instances (directories or HOST:PORT) that should own it.") var to: String
    @Option(parsing: .unconditional, help: "Moves running at once.") var parallelism = 2
    @Flag(name: .customLong("dry-run"), help: "Print the plan without moving anything.") var dryRun = false
    @Flag(help: "Print the plan and reports as JSON.") var json = false
    @Flag(help: "Log the migrations' steps and the engines' events to stderr (swift-log, debug level).") var verbose = false

    @OptionGroup var remote: RemoteOptions
    @OptionGroup var wire: WireOptions

    func run() async throws {
        let fromSpecs = from.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let toSpecs = to.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var opened: [String: InstanceEndpoint] = [:]
        func closeAll() async { for endpoint in opened.values { await endpoint.close() } }
        do {
            for (option, specs) in [("--from", fromSpecs), ("--to", toSpecs)] {
                if specs.contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
                    throw ShardDBError(.invalidArgument, "\(option) has an empty entry (two commas, or one at an end)")
                }
                if let twice = specs.first(where: { spec in specs.filter { $0 == spec }.count > 1 }) {
                    throw ShardDBError(.invalidArgument, "\(option) names \(twice) twice")
                }
            }
            guard parallelism > 0 else { throw ShardDBError(.invalidArgument, "--parallelism must be positive") }
            opened = try openEndpoints(fromSpecs, remote: remote, verbose: verbose, wireCompression: wire.compression)
            let partitioning = try await opened[fromSpecs[0]]!.endpoint.describeInstance().partitioning
            // A target directory that does not exist yet starts empty, partitioned like the sources.
            // It is planned as such and created only for a real run once the plan holds, so a dry
            // run or a refused plan leaves nothing behind.
            // Only a path that does not exist, or an empty directory: any other directory
            // without an instance is someone's files, and opening it says so.
            let missing = toSpecs.filter {
                InstanceAddress(parsing: $0) == nil && !InstanceAddress.looksLikeAddress($0)
                    && ((try? FileManager.default.contentsOfDirectory(atPath: $0))?.isEmpty ?? !FileManager.default.fileExists(atPath: $0))
            }
            // A dry run approves only targets the real run can create: the nearest existing
            // folder above a new one must be a writable directory.
            for spec in missing where !FileManager.default.fileExists(atPath: spec) {
                var ancestor = URL(fileURLWithPath: spec).standardized.deletingLastPathComponent()
                while !FileManager.default.fileExists(atPath: ancestor.path) && ancestor.path != "/" {
                    ancestor = ancestor.deletingLastPathComponent()
                }
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: ancestor.path, isDirectory: &isDirectory), isDirectory.boolValue,
                      access(ancestor.path, W_OK | X_OK) == 0 else {
                    throw ShardDBError(.notWritable, "cannot create the target \(spec): \(ancestor.path) is not a writable directory")
                }
            }
            for spec in toSpecs where opened[spec] == nil && !missing.contains(spec) {
                opened[spec] = try InstanceEndpoint.open(spec, remote: remote, verbose: verbose, wireCompression: wire.compression)
            }
            var descriptions: [String: InstanceDescription] = [:]
            for (spec, endpoint) in opened { descriptions[spec] = try await endpoint.endpoint.describeInstance() }
            for spec in missing {
                descriptions[spec] = InstanceDescription(instanceID: "new:\(spec)", location: spec, partitioning: partitioning,
                                                         shards: [], unfinishedMigrations: [])
            }
            // Two spellings of one instance (./a and a, a host and its address) are one
            // instance: the planner would give it two shares.
            for (option, specs) in [("--from", fromSpecs), ("--to", toSpecs)] {
                var seen: [String: String] = [:]
                for spec in specs {
                    guard let id = descriptions[spec]?.instanceID, !id.hasPrefix("new:") else { continue }
                    if let first = seen[id] {
                        throw ShardDBError(.invalidArgument, "\(option) names instance \(id) twice (as \(first) and \(spec))")
                    }
                    seen[id] = spec
                }
            }
            // A move a crash left in doubt (its target committed, its source still fenced)
            // is recorded by both owners, and the plan would refuse its range as owned
            // twice: such moves are finished first, by the journals (docs/MIGRATION.md).
            // Nothing else is settled here (each move's migrate settles its own direction).
            var settled: [String] = []
            let unfinished = descriptions.values.contains { !$0.unfinishedMigrations.isEmpty }
            if !dryRun && unfinished {
                let specs = opened.keys.sorted()
                for (i, a) in specs.enumerated() {
                    for b in specs[(i + 1)...] {
                        settled += try await MigrationCoordinator.resolveUnfinished(between: opened[a]!.endpoint, and: opened[b]!.endpoint,
                                                                                    inDoubtOnly: true)
                    }
                }
                for (spec, endpoint) in opened { descriptions[spec] = try await endpoint.endpoint.describeInstance() }
                if !json { for line in settled { print("settled \(line)") } }
            }
            var plan: RescalePlan
            do {
                plan = try RescalePlanner.plan(current: fromSpecs.map { descriptions[$0]! }, targets: toSpecs.map { descriptions[$0]! })
            } catch let error as ShardDBError where dryRun && unfinished {
                throw ShardDBError(error.code, error.message + " (a migration is unfinished: a rescale without --dry-run "
                    + "finishes one left in doubt first; 'shardctl migrate --resolve' settles any)")
            }
            if !dryRun && !missing.isEmpty {
                var created: [(spec: String, existed: Bool)] = []
                do {
                    for spec in missing where opened[spec] == nil {
                        let existed = FileManager.default.fileExists(atPath: spec)  // (then an empty directory)
                        opened[spec] = try InstanceEndpoint.open(spec, remote: remote, verbose: verbose, createLike: partitioning,
                                                                 wireCompression: wire.compression)
                        created.append((spec, existed))
                        descriptions[spec] = try await opened[spec]!.endpoint.describeInstance()
                    }
                } catch {
                    // Nothing has moved yet: the instances made for this run go again, empty.
                    for (spec, existed) in created {
                        await opened.removeValue(forKey: spec)?.close()
                        let files = existed ? ((try? FileManager.default.contentsOfDirectory(atPath: spec)) ?? []).map { spec + "/" + $0 } : [spec]
                        for file in files { try? FileManager.default.removeItem(atPath: file) }
                    }
                    throw error
                }
                plan = try RescalePlanner.plan(current: fromSpecs.map { descriptions[$0]! }, targets: toSpecs.map { descriptions[$0]! })
            }
            if json && dryRun { printJSON(plan, pretty: true); await closeAll(); return }
            if !json {
                print("plan: \(plan.moves.count) moves, \(plan.keyGroupsMoved) key groups change owner")
                for move in plan.moves { print("  \(move.fromLocation) shard \(move.shard) \(move.range) -> \(move.toLocation)") }
                for spec in toSpecs { print("  \(spec) will own \(plan.finalRanges[descriptions[spec]!.instanceID].map { "\($0)" } ?? "-")") }
            }
            if dryRun { await closeAll(); return }
            let endpoints = Dictionary(opened.map { (descriptions[$0.key]!.instanceID, $0.value.endpoint) }, uniquingKeysWith: { a, _ in a })
            let progress = ProgressLine()
            var executor = RescaleExecutor(endpoints: endpoints, parallelism: parallelism)
            // Silent unless --verbose: errors reach the user as one line, not as log output.
            executor.logger = shardctlEngineOptions(verbose: verbose).logger
            let reports = try await executor.run(plan) { move, p in
                progress.update("\(move.range) -> \(move.toLocation): \(p.phase.rawValue), \(p.keysCopied) keys, lag \(p.lag)")
            }
            progress.finish()
            if json {
                printJSON(RescaleResult(plan: plan, reports: reports, settled: settled), pretty: true)
            } else {
                let pauses = reports.map(\.pauseMilliseconds).sorted()
                print(String(format: "done: %d moves, %d keys copied; write pause max %.2f ms", reports.count,
                             reports.reduce(0) { $0 + $1.keysCopied }, pauses.last ?? 0))
            }
            await closeAll()
        } catch {
            await closeAll()
            fail("\(error)")
        }
    }

    struct RescaleResult: Encodable {
        var plan: RescalePlan
        var reports: [MigrationReport]
        /// Unfinished migrations settled before planning, a line each.
        var settled: [String]
    }
}
