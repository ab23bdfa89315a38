import ArgumentParser
import ShardDB

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a new instance.",
        discussion: """
            Hash partitioning (the default) hashes keys into K key groups (--key-groups, default 4096) \
            and gives each shard a contiguous range of them. Range partitioning (--split-points) gives \
            each shard a range of raw keys, so scans across shards are ordered. The partitioning is \
            fixed for the life of the instance. '--shards 0' makes an empty instance, a target for \
            migrations; '--like DIR' copies another instance's partitioning.
            """)

    @Argument(help: "The data directory to create (created if missing; must not hold a database).")
    var directory: String

    @Option(parsing: .unconditional, help: "Number of shards (default 4; with --split-points, the number of split points + 1).")
    var shards: Int?

    @Option(name: .customLong("key-groups"), parsing: .unconditional, help: "Key groups for hash partitioning (1...65536).")
    var keyGroups: Int?

    @Option(name: .customLong("split-points"), help: "Comma-separated split points for range partitioning, e.g. g,n,t.")
    var splitPoints: String?

    @Option(name: .customLong("default-ttl"), parsing: .unconditional, help: "Default TTL of every shard, in seconds.")
    var defaultTTL: Int64?

    @Option(help: "Use the partitioning of this existing instance.")
    var like: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    /// Options that exclude each other: a usage error (status 64).
    func validate() throws {
        if keyGroups != nil && splitPoints != nil { throw ValidationError("--key-groups and --split-points exclude each other") }
        if like != nil && (keyGroups != nil || splitPoints != nil) { throw ValidationError("--like excludes --key-groups and --split-points") }
    }

    func run() throws {
        try failing {
            let partitioning: Partitioning
            if let like {
                let other = try ShardEngine.open(at: like, options: shardctlEngineOptions())
                partitioning = other.partitioning
                other.close()
            } else if let splitPoints {
                let points = splitPoints.split(separator: ",", omittingEmptySubsequences: false).map { Array($0.utf8) }
                partitioning = .range(splitPoints: points)
            } else {
                partitioning = .hash(keyGroups: keyGroups ?? Partitioning.defaultKeyGroups)
            }
            let count: Int
            switch partitioning {
            case .range(let points): count = shards ?? points.count + 1
            case .hash: count = shards ?? 4
            }
            let engine = try ShardEngine.create(at: directory, shards: count, partitioning: partitioning, defaultTTLSeconds: defaultTTL,
                                              options: shardctlEngineOptions())
            defer { engine.close() }
            if json {
                printJSON(InitResult(directory: directory, instance: engine.instanceID, shards: count, partitioning: "\(partitioning)"))
            } else {
                print("created \(directory): instance \(engine.instanceID), \(count) shards, \(partitioning)")
            }
        }
    }

    struct InitResult: Encodable {
        var directory: String
        var instance: String
        var shards: Int
        var partitioning: String
    }
}
