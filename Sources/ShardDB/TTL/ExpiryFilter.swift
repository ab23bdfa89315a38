import RocksDB
import Synchronization

/// The compaction filter on every shard's column family: drops entries whose
/// header says they expired (by the engine's clock). One instance per shard, so
/// its counter is that shard's metric. Allocates nothing per entry.
final class ExpiryFilter: CompactionFilter, @unchecked Sendable {
    let clock: any ShardClock
    /// Entries dropped, counting those of earlier opens (the stats record's).
    let dropped = Atomic<Int>(0)
    /// `dropped` as last persisted (or loaded at open): close writes the stats only when it moved.
    let persisted = Atomic<Int>(0)

    init(shard: Int, clock: any ShardClock) {
        self.clock = clock
        super.init(name: "sharddb.expiry.shard-\(shard)")
    }

    override func shouldRemove(level: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        // Values we cannot parse are kept: the filter never destroys what it does not understand.
        guard let (header, _) = ValueHeader.parse(value), let expiry = header.expiresAtMilliseconds else { return false }
        guard clock.nowMilliseconds() >= expiry else { return false }
        dropped.add(1, ordering: .relaxed)
        return true
    }
}
