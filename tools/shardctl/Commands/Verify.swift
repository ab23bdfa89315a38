import ArgumentParser
import Foundation
import ShardDB

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check an instance for damage: table file checksums, every entry, the shard map.",
        discussion: """
            Opens the instance (which replays its write-ahead log and decodes the shard map), checks \
            the block checksums of every table file, reads every entry of every active shard with \
            checksum verification and decodes its value header, decodes the migration journal, and \
            checks that no two active shards own the same keys.

            Prints 'ok: ...' when intact. Otherwise prints one line per problem on stderr \
            ('shardctl: error: ...', naming the damaged file when RocksDB names it) and exits with 2.
            """)

    @OptionGroup var instance: InstanceOptions

    func run() throws {
        let report = try instance.withEngine { try $0.verifyIntegrity() }
        guard report.isIntact else {
            for problem in report.problems {
                writeStandardError(Data("shardctl: error: \(instance.directory): \(problem)\n".utf8))
            }
            throw ExitCode(2)
        }
        print("ok: \(report.shardsChecked) shards, \(report.entriesChecked) entries, table file checksums verified")
    }
}
