import ArgumentParser
import Foundation
import ShardDB
import ShardDBServer

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a value (UTF-8 text) under a key.",
        discussion: """
            Usage: put DIR KEY VALUE, or put --remote HOST:PORT --token-file F KEY VALUE for a live instance. \
            A key or value that starts with '-' goes after '--': put DIR -- KEY -VALUE.
            """)

    @OptionGroup var target: KeyTargetOptions
    @Option(parsing: .unconditional, help: "Seconds until the value expires (default: the shard's default TTL, if any).")
    var ttl: Int64?

    func validate() throws { try target.checkCount(["KEY", "VALUE"]) }

    func run() async throws {
        let (location, operands) = try failing { try target.split(expecting: ["KEY", "VALUE"]) }
        let ttl = try failing { try parseTTL(self.ttl) }
        let (key, value) = try failing { (try target.bytes(operands[0], "KEY"), try target.bytes(operands[1], "VALUE")) }
        switch location {
        case .directory(let directory):
            try target.instance(directory).withEngine { try $0.put(key, value, ttl: ttl) }
        case .remote(let remote):
            try await target.withRemote(remote) { try await $0.put(key, value, ttlSeconds: self.ttl) }
        }
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the value stored under a key.",
        discussion: """
            Usage: get DIR KEY, or get --remote HOST:PORT --token-file F KEY for a live instance. \
            Exits with status 1 (and prints nothing) when the key has no live value. Asking an \
            instance for a key it gave away fails with the new owner's location.
            """)

    @OptionGroup var target: KeyTargetOptions
    @Flag(help: "Print the result as JSON.") var json = false

    func validate() throws { try target.checkCount(["KEY"]) }

    func run() async throws {
        let (location, operands) = try failing { try target.split(expecting: ["KEY"]) }
        let key = try failing { try target.bytes(operands[0], "KEY") }
        let value: [UInt8]?
        switch location {
        case .directory(let directory):
            value = try target.instance(directory).withEngine { try $0.get(key) }
        case .remote(let remote):
            value = try await target.withRemote(remote) { try await $0.get(key) }
        }
        guard let value else { throw ExitCode(1) }
        if json {
            printJSON(JSONRecord(key: key, value: value, expiresAt: nil, shard: nil))
        } else {
            writeStandardOutput(Data(value))
            writeStandardOutput(Data("\n".utf8))
        }
    }
}

/// `DIR KEY ...` or `--remote HOST:PORT KEY ...`: where a key command runs.
struct KeyTargetOptions: ParsableArguments {
    enum Location { case directory(String), remote(InstanceAddress) }

    @Option(help: "HOST:PORT of a live instance ('shardctl serve') instead of a directory.") var remote: String?
    @OptionGroup var remoteOptions: RemoteOptions
    @Flag(name: .long, help: "Log engine events to stderr.") var verbose = false
    @Option(name: .long, parsing: .unconditional, help: "Refuse writes while the instance's filesystem has less free space than this, in bytes (default 64 MiB; 0 turns the check off; not with --remote).")
    var minFreeDiskBytes: UInt64?
    @Argument(help: "The instance's data directory (unless --remote), then the operands.") var operands: [String] = []
    @Flag(help: "KEY (and put's VALUE) are hex digits, two per byte: for binary bytes, or a key that scan and export show escaped. (get prints the value's bytes as stored; its --json shows a binary one as valueHex.)")
    var hex = false

    /// An operand's bytes: its UTF-8, or with --hex the bytes its digits spell.
    func bytes(_ operand: String, _ name: String) throws -> [UInt8] { try Self.bytes(operand, name, hex: hex) }

    static func bytes(_ operand: String, _ name: String, hex: Bool) throws -> [UInt8] {
        guard hex else { return Array(operand.utf8) }
        guard let bytes = ByteText.unhex(operand) else {
            throw ShardDBError(.invalidArgument, "\(name) '\(operand)' is not hex (two digits per byte, with --hex)")
        }
        return bytes
    }

    /// The operand count, checked while parsing: a wrong one is a usage error (status 64).
    func checkCount(_ names: [String]) throws {
        if remote != nil {
            guard operands.count == names.count else {
                throw ValidationError("expected \(names.joined(separator: " ")) after --remote\(Self.dashHint)")
            }
        } else {
            guard operands.count == names.count + 1 else {
                throw ValidationError("expected DIR \(names.joined(separator: " ")) (or --remote HOST:PORT)\(Self.dashHint)")
            }
        }
    }

    /// Operands that start with '-' are read as options unless they follow '--'.
    static let dashHint = "; a key or value that starts with '-' goes after '--' (put DIR -- KEY -VALUE)"

    func split(expecting names: [String]) throws -> (Location, [String]) {
        try checkCount(names)
        if let remote {
            guard let address = InstanceAddress(parsing: remote) else { throw ShardDBError(.invalidArgument, "--remote '\(remote)' is not HOST:PORT") }
            guard minFreeDiskBytes == nil else {
                throw ShardDBError(.invalidArgument, "--min-free-disk-bytes applies to a directory; the instance at --remote has its own ('shardctl serve')")
            }
            return (.remote(address), operands)
        }
        // Credentials given for a directory would be ignored: say so instead.
        if let ignored = remoteOptions.givenConnectionOptions.first {
            throw ShardDBError(.invalidArgument, "\(ignored) applies to --remote HOST:PORT, not to a directory")
        }
        return (.directory(operands[0]), Array(operands.dropFirst()))
    }

    func instance(_ directory: String) throws -> InstanceOptions {
        // After "--": a directory whose name starts with '-' is the operand, not an option.
        var options = try InstanceOptions.parse(["--", directory])
        options.verbose = verbose
        options.minFreeDiskBytes = minFreeDiskBytes
        return options
    }

    func withRemote<R>(_ address: InstanceAddress, _ body: (RemoteInstance) async throws -> R) async throws -> R {
        let client = try failing { try remoteOptions.connect(address) }
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            fail("\(error)")
        }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove a key (no error when it is absent).",
        discussion: """
            Usage: delete DIR KEY, or delete --remote HOST:PORT --token-file F KEY for a live instance. \
            Asking an instance to delete a key it gave away fails with the new owner's location.
            """)

    @OptionGroup var target: KeyTargetOptions

    func validate() throws { try target.checkCount(["KEY"]) }

    func run() async throws {
        let (location, operands) = try failing { try target.split(expecting: ["KEY"]) }
        let key = try failing { try target.bytes(operands[0], "KEY") }
        switch location {
        case .directory(let directory):
            try target.instance(directory).withEngine { try $0.delete(key) }
        case .remote(let remote):
            try await target.withRemote(remote) { try await $0.delete(key) }
        }
    }
}

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compact shards now, reclaiming expired entries from disk.",
        discussion: "Without --shard, every active shard is compacted. Prints how many expired entries were dropped.")

    @OptionGroup var instance: InstanceOptions
    @Option(parsing: .unconditional, help: "Only this shard.") var shard: Int?
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

struct DeleteRange: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-range",
        abstract: "Remove every key in [LO, HI), atomically.",
        discussion: """
            Range partitioning: the range may span shards (one atomic write); every part of it must be \
            owned by this instance. Hash partitioning spreads a key range over every key group, so give \
            the key group to delete in: --key-group N, or --key-group-of KEY (the key group of KEY).
            """)

    @OptionGroup var instance: InstanceOptions
    @Argument(help: "The lower bound (inclusive).") var lower: String
    @Argument(help: "The upper bound (exclusive).") var upper: String
    @Option(parsing: .unconditional, help: "Hash partitioning: the key group to delete in.") var keyGroup: Int?
    @Option(help: "Hash partitioning: delete in the key group of this key.") var keyGroupOf: String?

    func validate() throws {
        if keyGroup != nil && keyGroupOf != nil { throw ValidationError("give --key-group or --key-group-of, not both") }
    }

    func run() throws {
        try instance.withEngine { engine in
            var group = keyGroup
            if let keyGroupOf {
                guard !keyGroupOf.isEmpty else { throw ShardDBError(.invalidKey, "--key-group-of: keys must not be empty") }
                guard let kg = engine.keyGroup(of: keyGroupOf) else {
                    throw ShardDBError(.invalidArgument, "--key-group-of applies only to hash partitioning")
                }
                group = kg
            }
            try engine.deleteRange(from: lower, to: upper, keyGroup: group)
        }
    }
}
