import ArgumentParser
import Foundation
import ShardDB

struct SalvageWAL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salvage-wal",
        abstract: "Open an instance whose write-ahead log is damaged, dropping the log from the damage on.",
        discussion: """
            An instance whose write-ahead log is damaged in the middle does not open: the error names \
            the log file, because replaying around the damage could silently drop acknowledged writes. \
            This command opens it with RocksDB's point-in-time recovery: each log is replayed up to its \
            first damaged record and the rest of it is dropped. It prints one line per log cut short \
            ('dropped: FILE: N bytes (REASON)'), or 'nothing dropped'. The writes after the damage are \
            lost; copy the directory first if they matter. Afterwards the instance opens normally.
            """)

    @OptionGroup var instance: InstanceOptions

    func run() throws {
        let dropped = try failing { try ShardEngine.salvageWriteAheadLog(at: instance.directory, options: instance.engineOptions()) }
        if dropped.isEmpty { print("nothing dropped: every write-ahead log replayed completely") }
        for record in dropped { print("dropped: \(record.file): \(record.bytes) bytes (\(record.reason))") }
    }
}
