#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// One counter per ``ThreadStripe``, each on cache lines of its own, so that
/// threads count themselves in and out of something without writing to a line
/// another thread writes (at 2 threads, a shared line's moves between cores
/// cost about 1.5–2% of a cached point read per pair of atomic writes).
///
/// A value over memory its owner allocates (``allocate()``) and frees
/// (``deallocate()``), so hot paths copy it without a reference count. Public
/// for the engine above, which counts its routing table's readers this way.
public struct StripedCounters: @unchecked Sendable {
    @usableFromInline static let lineBytes = 128  // two lines: the adjacent-line prefetcher pairs them
    @usableFromInline let base: UnsafeMutableRawPointer

    private init(base: UnsafeMutableRawPointer) { self.base = base }

    public static func allocate() -> StripedCounters {
        let base = UnsafeMutableRawPointer.allocate(byteCount: ThreadStripe.count * lineBytes, alignment: lineBytes)
        for stripe in 0..<ThreadStripe.count {
            (base + stripe * lineBytes).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        }
        return StripedCounters(base: base)
    }

    /// Frees the counters; no copy may be used afterwards.
    public func deallocate() {
        for stripe in 0..<ThreadStripe.count { _ = counter(stripe).deinitialize(count: 1) }
        base.deallocate()
    }

    @inlinable @inline(__always)
    func counter(_ stripe: Int) -> UnsafeMutablePointer<Atomic<Int>> {
        (base + stripe * Self.lineBytes).assumingMemoryBound(to: Atomic<Int>.self)
    }

    /// Counts the calling thread in; returns its stripe, for ``leave(_:)``.
    /// Sequentially consistent: a load that follows it in the caller is ordered
    /// after it against another thread's store and ``isZero(_:)`` (the pattern
    /// both users rely on: count in, then look; announce, then look).
    @inlinable @inline(__always)
    public func enter() -> Int {
        let stripe = ThreadStripe.current
        counter(stripe).pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        return stripe
    }

    /// Counts out what ``enter()`` counted in (releasing what was read meanwhile).
    @inlinable @inline(__always)
    public func leave(_ stripe: Int) {
        counter(stripe).pointee.wrappingSubtract(1, ordering: .releasing)
    }

    /// True when no thread of `stripe` is counted in at this instant.
    @inlinable @inline(__always)
    public func isZero(_ stripe: Int) -> Bool {
        counter(stripe).pointee.load(ordering: .sequentiallyConsistent) == 0
    }
}

/// The stripe of the calling thread: threads get stripes in the order they
/// first ask, so the first ``count`` threads share none.
public enum ThreadStripe {
    public static let count = 16

    @usableFromInline static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()
    private static let next = Atomic<Int>(0)

    public static var current: Int {
        @inlinable @inline(__always) get {
            // Stored plus one, so a thread's first call (nil) is told apart from stripe 0.
            if let stored = pthread_getspecific(key) { return Int(bitPattern: stored) &- 1 }
            return assign()
        }
    }

    @usableFromInline @inline(never)
    static func assign() -> Int {
        let stripe = next.wrappingAdd(1, ordering: .relaxed).oldValue % count
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: stripe + 1))
        return stripe
    }
}
