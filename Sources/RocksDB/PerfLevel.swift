import CRocksDB
import CRocksDBShim

/// RocksDB's perf counters level (`rocksdb::PerfLevel`), a per-thread setting:
/// how much the thread's perf context counts and times.
///
/// RocksDB's default is ``enableCount``, which touches a thread-local on every key
/// comparison of every read and write (about 13% of a put's instructions with a
/// million keys; db_bench runs with ``disable``). A ``Database`` opened with a
/// `threadPerfLevel` applies that level to each thread the first time the thread
/// uses it, unless the thread's level was already chosen: with
/// ``setForCurrentThread(_:)``, or by an earlier database's `threadPerfLevel`.
public enum PerfLevel: Int32, Sendable {
    case disable = 1
    case enableCount = 2
    case enableTimeExceptForMutex = 3
    case enableTimeAndCPUTimeExceptForMutex = 4
    case enableTime = 5

    /// Sets the calling thread's level; databases opened with a `threadPerfLevel`
    /// leave this thread's choice alone from then on.
    public static func setForCurrentThread(_ level: PerfLevel) {
        sharddb_set_perf_level(level.rawValue)
    }

    /// Applies `level` to the calling thread unless the thread's level was already
    /// chosen; after the first call on a thread this is one thread-local read.
    @usableFromInline
    static func applyOnce(_ level: PerfLevel) {
        sharddb_perf_level_default_once(level.rawValue)
    }
}

/// The calling thread's perf context (counters RocksDB keeps per thread while
/// the thread's ``PerfLevel`` allows). Only the counters ShardDB's tests and
/// tools need are exposed.
public enum PerfContext {
    /// Zeroes the calling thread's counters.
    public static func reset() {
        let context = rocksdb_perfcontext_create()
        defer { rocksdb_perfcontext_destroy(context) }
        rocksdb_perfcontext_reset(context)
    }

    /// User-key comparisons made by the calling thread since the last ``reset()``.
    public static var userKeyComparisons: UInt64 {
        let context = rocksdb_perfcontext_create()
        defer { rocksdb_perfcontext_destroy(context) }
        return rocksdb_perfcontext_metric(context, Int32(rocksdb_user_key_comparison_count))
    }
}
