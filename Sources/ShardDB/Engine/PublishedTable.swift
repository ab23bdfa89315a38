import RocksDB
import Synchronization

/// The current routing table, for the reads and writes that look it up on every
/// operation: they take no lock and no reference count.
///
/// A lock or a reference count is an atomic write to one cache line that every
/// thread shares; at 2 threads the line's moves between cores cost about 2% of a
/// cached point read each. Here a reader instead counts itself in on a counter
/// of its own thread's stripe (``StripedCounters``: a line no other thread
/// writes, up to ``ThreadStripe/count`` threads), loads the table, and uses it
/// unretained until it counts itself out. A replaced table is released only
/// once every stripe was seen at zero after the replacement (a grace period, as
/// in RCU): no reader can still hold it then, because a reader counts in before
/// it loads.
///
/// The caller serializes ``publish(_:)`` (the engine holds `tableUpdates`).
final class PublishedTable: @unchecked Sendable {
    /// The current table, retained once by this object.
    private let current: Atomic<UnsafeMutableRawPointer>
    private let readers = StripedCounters.allocate()
    /// Replaced tables some reader may still use; touched only by `publish` and `deinit`.
    private var retired: [Unmanaged<RoutingTable>] = []

    init(_ table: RoutingTable) {
        current = Atomic(Unmanaged.passRetained(table).toOpaque())
    }

    deinit {
        // No reader runs now: each holds the engine, which holds this object.
        Unmanaged<RoutingTable>.fromOpaque(current.load(ordering: .relaxed)).release()
        for table in retired { table.release() }
        readers.deallocate()
    }

    /// Runs `body` with the current table, which stays valid until `body` returns
    /// (it must not escape; what `body` returns is retained as usual).
    @inline(__always)
    func read<R>(_ body: (RoutingTable) throws -> R) rethrows -> R {
        // Counted in before the load (both sequentially consistent, as the store and
        // the loads in `publish`): either this load sees the new table or `publish`
        // sees this reader counted in.
        let stripe = readers.enter()
        defer { readers.leave(stripe) }
        let table = Unmanaged<RoutingTable>.fromOpaque(current.load(ordering: .sequentiallyConsistent))
        return try table._withUnsafeGuaranteedRef { try body($0) }
    }

    /// Makes `table` the current one and releases the tables replaced before
    /// that no reader can still hold. It polls the stripes for a moment (a few
    /// hundred microseconds at most, without sleeping: a migration's cutover
    /// replaces the table while writes wait) and each stripe need be seen at
    /// zero once. A table a reader holds longer (a caller's slow `body`, a write
    /// RocksDB stalls, the caller's own read) is released by a later call, or
    /// by `deinit`.
    func publish(_ table: RoutingTable) {
        let old = current.exchange(Unmanaged.passRetained(table).toOpaque(), ordering: .sequentiallyConsistent)
        retired.append(Unmanaged.fromOpaque(old))
        var pending = Array(0..<ThreadStripe.count)
        for _ in 0..<2_000 where !pending.isEmpty {
            pending.removeAll { readers.isZero($0) }
        }
        guard pending.isEmpty else { return }
        for table in retired { table.release() }
        retired.removeAll()
    }

    /// Tables replaced but not yet released (tests).
    var retiredCount: Int { retired.count }
}
