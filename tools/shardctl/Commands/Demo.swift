import ArgumentParser
import Foundation
import ShardDB

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the embedded quick-start: create an instance, load it, reopen, verify, report.",
        discussion: "Works in a temporary directory (removed afterwards unless --keep) or in --directory.")

    @Option(help: "Keys to load.") var keys = 200_000
    @Option(help: "Shards to create.") var shards = 8
    @Option(help: "Use this (new) directory instead of a temporary one.") var directory: String?
    @Flag(help: "Keep the data directory.") var keep = false

    func run() throws {
        try failing {
            guard keys > 0, shards > 0 else { throw ShardDBError(.invalidArgument, "--keys and --shards must be positive") }
            let dir = directory ?? (NSTemporaryDirectory() + "sharddb-demo-\(ProcessInfo.processInfo.processIdentifier)")
            defer { if !keep && directory == nil { try? FileManager.default.removeItem(atPath: dir) } }
            print("ShardDB demo in \(dir)")

            var engine = try ShardEngine.create(at: dir, shards: shards)
            let progress = ProgressLine()
            let start = Date()
            let batchSize = 1000
            var written = 0
            while written < keys {
                try engine.write { batch in
                    for i in written..<min(keys, written + batchSize) {
                        try batch.put(Self.key(i), Self.value(i))
                    }
                }
                written = min(keys, written + batchSize)
                progress.update("loading: \(written)/\(keys)")
            }
            // A few entries with a TTL, to show expiry metadata.
            for i in 0..<10 { try engine.put("session:\(i)", "token-\(i)", ttl: .seconds(3600)) }
            progress.finish()
            let loadSeconds = Date().timeIntervalSince(start)
            print(String(format: "loaded %d keys into %d shards in %.2f s (%.0f keys/s, atomic batches of %d)",
                         keys, shards, loadSeconds, Double(keys) / loadSeconds, batchSize))
            engine.close()

            engine = try ShardEngine.open(at: dir)
            defer { engine.close() }
            let verifyStart = Date()
            for i in 0..<keys {
                guard let value = try engine.get(Self.key(i)), value == Array(Self.value(i).utf8) else {
                    throw ShardDBError(.storage, "verification failed: key \(Self.key(i)) lost or changed after reopen")
                }
            }
            let verifySeconds = Date().timeIntervalSince(verifyStart)
            print(String(format: "reopened and verified every key in %.2f s (%.0f gets/s)", verifySeconds, Double(keys) / verifySeconds))
            let infos = try engine.shards()
            printTable(header: ["shard", "range", "keys~", "bytes"],
                       rows: infos.map { [String($0.id), "\($0.descriptor.range)", String($0.estimatedKeys), String($0.approximateBytes)] })
            var counted = 0
            try engine.scan { _ in counted += 1; return true }
            print("scan saw \(counted) live entries (\(keys) loaded + 10 with a TTL); demo OK")
        }
    }

    static func key(_ i: Int) -> String { "user:\(i)" }
    static func value(_ i: Int) -> String { "profile-\(i)-" + String(repeating: "x", count: 32) }
}
