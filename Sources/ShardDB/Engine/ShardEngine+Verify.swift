import Foundation
import RocksDB

/// What ``ShardEngine/verifyIntegrity()`` checked and the problems it found.
public struct IntegrityReport: Sendable {
    /// One line per problem, naming the damaged file when RocksDB names it; empty when intact.
    public var problems: [String]
    public var shardsChecked: Int
    public var entriesChecked: Int

    public var isIntact: Bool { problems.isEmpty }
}

extension ShardEngine {
    /// Checks the stored state: every table file's block checksums (RocksDB's
    /// `VerifyChecksum`), every active shard's entries read with checksum
    /// verification and their value headers, the migration journal, and that no
    /// two active shards own the same keys. Opening the instance already checked
    /// the MANIFEST, the WAL replay and the shard records.
    ///
    /// ```swift
    /// let report = try engine.verifyIntegrity()
    /// for problem in report.problems { print(problem) }
    /// ```
    ///
    /// - returns: the problems found (one line each); does not throw for damage.
    /// - throws: ``ShardDBError``: `.closed`.
    public func verifyIntegrity() throws -> IntegrityReport {
        guard isOpen else { throw ShardDBError(.closed, "the engine at \(path) is closed") }
        var report = IntegrityReport(problems: [], shardsChecked: 0, entriesChecked: 0)
        do { try database.verifyChecksums() } catch {
            report.problems.append("table files: \(Self.oneLine(error))")
        }
        let table = self.table
        for shard in table.shards where shard.isActive {
            report.shardsChecked += 1
            guard let family = shard.family else {
                report.problems.append("shard \(shard.id): active in the shard map but its column family is missing")
                continue
            }
            let readOptions = ReadOptions(fillCache: false, verifyChecksums: true)
            let bounds = shard.descriptor.range.storedBounds
            readOptions.setBounds(lower: bounds.lower, upper: bounds.upper)
            var badValues = 0
            do {
                let iterator = try database.makeIterator(in: family, readOptions: readOptions)
                iterator.seekToFirst()
                while iterator.isValid {
                    report.entriesChecked += 1
                    let intact = try iterator.withValue { ValueHeader.parse($0) != nil }
                    if !intact {
                        badValues += 1
                        if badValues <= 3 {
                            // Copied inside: RocksDB's buffer must not outlive the call (a close may free it).
                            let key = try iterator.withKey { [UInt8](KeyEncoding.userKey($0, hashed: table.isHashed)) }
                            report.problems.append("shard \(shard.id): key '\(ByteText.display(key))': corrupted value header")
                        }
                    }
                    iterator.next()
                }
                try iterator.checkStatus()
            } catch {
                report.problems.append("shard \(shard.id): \(Self.oneLine(error))")
            }
            if badValues > 3 { report.problems.append("shard \(shard.id): \(badValues) values with corrupted headers in all") }
        }
        do { _ = try migrationJournal() } catch {
            report.problems.append("migration journal: \(Self.oneLine(error))")
        }
        report.problems += Self.overlappingShards(table.shards.map(\.descriptor))
        return report
    }

    /// Pairs of active shards whose ranges overlap, one line each.
    static func overlappingShards(_ shards: [ShardDescriptor]) -> [String] {
        let active = shards.filter { $0.state == .active }
        var problems: [String] = []
        for (i, a) in active.enumerated() {
            for b in active[(i + 1)...] where a.range.overlaps(b.range) {
                problems.append("shard map: shards \(a.id) (\(a.range)) and \(b.id) (\(b.range)) both own keys of the overlap")
            }
        }
        return problems
    }

    private static func oneLine(_ error: Error) -> String {
        let text = (error as? RocksDBError)?.message ?? "\(error)"
        return text.split(separator: "\n").joined(separator: " ")
    }
}
