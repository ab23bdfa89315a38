import ArgumentParser
import Foundation
import ShardDB

struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Store a value (UTF-8 text) under a key.")

    @OptionGroup var instance: InstanceOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "The value.") var value: String
    @Option(help: "Seconds until the value expires (default: the shard's default TTL, if any).")
    var ttl: Int64?

    func run() throws {
        let ttl = try failing { try parseTTL(self.ttl) }
        try instance.withEngine { try $0.put(key, value, ttl: ttl) }
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the value stored under a key.",
        discussion: "Exits with status 1 (and prints nothing) when the key has no live value.")

    @OptionGroup var instance: InstanceOptions
    @Argument(help: "The key.") var key: String
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let value = try instance.withEngine { try $0.get(key) }
        guard let value else { throw ExitCode(1) }
        if json {
            printJSON(JSONRecord(key: Array(key.utf8), value: value, expiresAt: nil, shard: nil))
        } else {
            FileHandle.standardOutput.write(Data(value))
            FileHandle.standardOutput.write(Data("\n".utf8))
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a key (no error when it is absent).")

    @OptionGroup var instance: InstanceOptions
    @Argument(help: "The key.") var key: String

    func run() throws {
        try instance.withEngine { try $0.delete(key) }
    }
}

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compact shards now, reclaiming expired entries from disk.",
        discussion: "Without --shard, every active shard is compacted. Prints how many expired entries were dropped.")

    @OptionGroup var instance: InstanceOptions
    @Option(help: "Only this shard.") var shard: Int?
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let dropped = try instance.withEngine { try $0.purgeExpired(shard: shard) }
        if json {
            printJSON(["expiredDropped": dropped])
        } else {
            print("dropped \(dropped) expired entries")
        }
    }
}
