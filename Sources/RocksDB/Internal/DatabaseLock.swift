#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The lock every call through a ``Database`` holds shared and `close()`, drops
/// of column families and explicit snapshot releases hold exclusively, so a
/// handle is never used while, or after, the C objects behind it are destroyed.
///
/// The calls made per operation (point reads, puts, deletes: ``fast``) take it
/// without writing to a cache line other threads write: they count themselves
/// in on their thread's stripe (``ThreadStripe``) and check that no exclusive
/// hold is wanted. A pthread lock's shared hold is an atomic write to one line
/// every reader shares, and at 2 threads the line's moves between cores cost
/// about 1.5% of a cached point read. The other calls hold the pthread lock
/// shared, as do fast callers while an exclusive hold is wanted.
///
/// An exclusive hold announces itself, waits until every stripe was seen at
/// zero (a fast caller that comes later sees the announcement and takes the
/// pthread lock instead, so none is let in after its stripe was seen), then
/// takes the pthread lock exclusively. The pthread lock prefers readers, so a
/// shared hold taken inside another (a read in a read's closure) never waits
/// for a waiting exclusive one; and a fast caller nested in a fast hold while
/// an exclusive one is wanted takes the pthread lock, which the exclusive one
/// does not hold before every stripe drained.
final class DatabaseLock: @unchecked Sendable {
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>
    private let readers = StripedCounters.allocate()
    /// Exclusive holds wanted or held, on a line of its own.
    private let wanted: UnsafeMutablePointer<Atomic<Int>>

    init() {
        rwlock = .allocate(capacity: 1)
        rwlock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(rwlock, nil)
        let line = UnsafeMutableRawPointer.allocate(byteCount: StripedCounters.lineBytes, alignment: StripedCounters.lineBytes)
        wanted = line.bindMemory(to: Atomic<Int>.self, capacity: 1)
        wanted.initialize(to: Atomic(0))
    }

    deinit {
        readers.deallocate()
        _ = wanted.deinitialize(count: 1)
        UnsafeMutableRawPointer(wanted).deallocate()
        pthread_rwlock_destroy(rwlock)
        rwlock.deallocate()
    }

    /// The lock without a reference to this object, for the per-operation calls
    /// (a method call through a stored property retains the object: an atomic
    /// write to a line every thread shares). Valid while this lock lives.
    var fast: FastDatabaseLock { FastDatabaseLock(rwlock: rwlock, readers: readers, wanted: wanted) }

    @inline(__always)
    func withReadLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }

    func withWriteLock<R>(_ body: () throws -> R) rethrows -> R {
        wanted.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        defer { wanted.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent) }
        for stripe in 0..<ThreadStripe.count {
            var waits = 0
            while !readers.isZero(stripe) { Self.backOff(&waits) }
        }
        pthread_rwlock_wrlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }

    /// Spins briefly, then yields, then sleeps 50 µs at a time: fast holds last
    /// microseconds, but a caller's closure may run for longer.
    private static func backOff(_ waits: inout Int) {
        waits += 1
        if waits < 64 { return }
        if waits < 128 { sched_yield(); return }
        var pause = timespec(tv_sec: 0, tv_nsec: 50_000)
        nanosleep(&pause, nil)
    }
}

/// A ``DatabaseLock`` for the per-operation calls, held by no reference; whoever
/// stores one also keeps the lock it came from.
struct FastDatabaseLock: @unchecked Sendable {
    let rwlock: UnsafeMutablePointer<pthread_rwlock_t>
    let readers: StripedCounters
    let wanted: UnsafeMutablePointer<Atomic<Int>>

    /// Holds the lock shared; pass what it returns to ``unlock(_:)``.
    @inline(__always)
    func lockShared() -> Int {
        // Counted in before looking (both sequentially consistent, as the
        // announcement and the loads in `withWriteLock`): either this sees the
        // announcement or the exclusive hold sees this caller counted in.
        let stripe = readers.enter()
        if wanted.pointee.load(ordering: .sequentiallyConsistent) == 0 { return stripe }
        readers.leave(stripe)
        pthread_rwlock_rdlock(rwlock)
        return -1
    }

    @inline(__always)
    func unlock(_ hold: Int) {
        if hold >= 0 { readers.leave(hold) } else { pthread_rwlock_unlock(rwlock) }
    }
}
