#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The time source for expiry decisions. Reads, scans and the compaction
/// filter all use the engine's one clock, so tests control time by injecting
/// a ``ManualClock`` instead of sleeping.
public protocol ShardClock: Sendable {
    /// Milliseconds since the Unix epoch.
    func nowMilliseconds() -> Int64
}

/// Wall-clock time (`CLOCK_REALTIME`).
public struct SystemClock: ShardClock {
    public init() {}
    public func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// A clock that moves only when told to.
public final class ManualClock: ShardClock {
    private let now: Atomic<Int64>

    public init(milliseconds: Int64 = 1_700_000_000_000) { now = Atomic(milliseconds) }

    public func nowMilliseconds() -> Int64 { now.load(ordering: .relaxed) }

    /// Moves the clock forward (or back, with a negative amount).
    public func advance(milliseconds: Int64) { now.add(milliseconds, ordering: .relaxed) }

    public func set(milliseconds: Int64) { now.store(milliseconds, ordering: .relaxed) }
}

/// How long a written value lives.
public enum TTL: Sendable, Equatable {
    /// The shard's default TTL (none unless one was set).
    case shardDefault
    /// Never expires, whatever the shard's default.
    case never
    /// Expires this many milliseconds after the write.
    case milliseconds(Int64)
    /// Expires at this absolute time (milliseconds since the Unix epoch), as
    /// carried by exports, changelogs and migrations. A time in the past stores
    /// an entry that is already invisible.
    case expiresAt(Int64)

    /// The longest TTL a shard's default may have, in seconds (10,000 years): far
    /// from overflowing an expiry in milliseconds since the epoch, which the
    /// earlier bound (`Int64.max / 1000` seconds) did for every write.
    public static let maxSeconds: Int64 = 315_360_000_000

    /// Expires this many seconds after the write.
    public static func seconds(_ seconds: Int64) -> TTL {
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        return .milliseconds(overflow ? (seconds > 0 ? Int64.max : Int64.min) : ms)
    }

    /// The absolute expiry for a write at `now`, given the shard default.
    ///
    /// - throws: ``ShardDBError`` `.invalidTTL` for a zero or negative TTL or an overflowing expiry.
    func expiry(now: Int64, shardDefaultSeconds: Int64?) throws -> Int64? {
        let milliseconds: Int64
        switch self {
        case .never: return nil
        case .expiresAt(let at): return at
        case .shardDefault:
            guard let seconds = shardDefaultSeconds else { return nil }
            // Checked: a default stored before defaults were bounded (or sent by a
            // peer) could be large enough to wrap around to a short TTL.
            let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
            guard !overflow else {
                throw ShardDBError(.invalidTTL, "the shard's default TTL of \(seconds) s overflows the expiry timestamp; set a default of at most \(TTL.maxSeconds) s")
            }
            milliseconds = product
        case .milliseconds(let ms): milliseconds = ms
        }
        guard milliseconds > 0 else {
            throw ShardDBError(.invalidTTL, "TTL must be positive, got \(milliseconds) ms")
        }
        let (expiry, overflow) = now.addingReportingOverflow(milliseconds)
        guard !overflow else {
            throw ShardDBError(.invalidTTL, "TTL of \(milliseconds) ms overflows the expiry timestamp")
        }
        return expiry
    }
}
