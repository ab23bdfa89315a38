import Foundation
import Histogram
import ShardDB
import Synchronization

/// db_bench's workloads, by db_bench's names.
enum BenchWorkload: String, CaseIterable {
    case fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom, readwhilewriting
    /// Reads and writes of random keys in one thread, `--readwritepercent` of them reads
    /// (db_bench's mix: the reads of each group of 100 first, then its writes).
    case readrandomwriterandom
    /// A read, then a write, of the same random key as one operation (db_bench's).
    case updaterandom
    /// Not a measurement: waits until no flush or compaction is pending or running,
    /// so the workload after it starts on a settled database (db_bench's name).
    case waitforcompaction
    /// Not a measurement: compacts the whole database now (every shard's memtable
    /// flushed, then all its data into one sorted run, the bottommost level
    /// rewritten), as db_bench's `compact`, so the workload after it reads a
    /// database of known shape (db_bench's name).
    case compact

    /// db_bench recreates the database before these.
    var needsFreshDatabase: Bool { self == .fillseq || self == .fillrandom }
    /// Seeks are only meaningful over key-ordered shards (range partitioning).
    var needsOrderedKeys: Bool { self == .seekrandom }
    /// fillseq writes keys in order, as db_bench's does, only without a hashed key-group
    /// prefix in front of them: range partitioning is its default (hash stays possible).
    var prefersOrderedKeys: Bool { needsOrderedKeys || self == .fillseq }
    /// Workloads that read keys which may be absent, so their results count the ones found.
    var reportsFound: Bool {
        switch self {
        case .readrandom, .readwhilewriting, .seekrandom, .readrandomwriterandom, .updaterandom: true
        default: false
        }
    }
}

/// db_bench's keys: the index as 8 big-endian bytes, padded with '0' to the key
/// size; a key shorter than 8 bytes holds the index's low-order bytes, big-endian
/// (db_bench's `GenerateKeyFromInt`), so distinct indexes below 256^size stay distinct.
enum BenchKeys {
    @inline(__always)
    static func write(_ index: Int, into key: UnsafeMutableRawBufferPointer) {
        let bigEndian = UInt64(truncatingIfNeeded: index).bigEndian
        withUnsafeBytes(of: bigEndian) { bytes in
            let count = min(8, key.count)
            for i in 0..<count { key[i] = bytes[8 - count + i] }
        }
    }

    /// A reusable key buffer of `size` bytes, '0'-padded; the caller deallocates it.
    static func buffer(size: Int) -> UnsafeMutableRawBufferPointer {
        let key = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
        key.initializeMemory(as: UInt8.self, repeating: UInt8(ascii: "0"))
        return key
    }

    static func key(_ index: Int, size: Int) -> [UInt8] {
        var key = [UInt8](repeating: UInt8(ascii: "0"), count: size)
        key.withUnsafeMutableBytes { write(index, into: $0) }
        return key
    }
}

/// A fast per-thread generator (xorshift64*); each thread has its own, so
/// threads never share random state.
struct BenchRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    @inline(__always)
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    /// Uniform in `0..<bound` (bound > 0).
    @inline(__always)
    mutating func uniform(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Uniform in `0.0..<1.0`.
    @inline(__always)
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// db_bench's value source: 1 MiB of data that compresses to about half its
/// size (each 100-byte piece is 50 random printable bytes written twice), so
/// compression works as hard as for db_bench. Values are slices of it.
///
/// Like db_bench's `RandomGenerator`, it has a generator of its own with a fixed
/// seed, so a thread's key sequence is the same in every workload run with the
/// same `--seed` and a readrandom after a fillrandom reads what the fill wrote.
struct BenchValues {
    private let data: [UInt8]
    private var position = 0

    init(minimumSize: Int) {
        var random = BenchRandom(seed: 301)
        var data: [UInt8] = []
        let size = max(1 << 20, minimumSize)
        data.reserveCapacity(size + 100)
        while data.count < size {
            let raw = (0..<50).map { _ in UInt8(32 + random.uniform(95)) }
            data += raw
            data += raw
        }
        self.data = data
    }

    /// Calls `body` with the next `length` bytes.
    @inline(__always)
    mutating func withNext<R>(_ length: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if position + length > data.count { position = 0 }
        let start = position
        position += length
        return try data.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
    }
}

/// Nanoseconds on the monotonic clock.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// What one thread measured.
struct ThreadTally {
    var ops = 0
    var bytes = 0
    var found = 0
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000,
                                      numberOfSignificantValueDigits: .three)
    var start: UInt64 = 0
    var finish: UInt64 = 0
    /// readwhilewriting's background writer: not part of the reported result.
    var isBackgroundWriter = false
    /// readrandomwriterandom's writes (counted in `ops` too).
    var writes = 0

    /// Whether every operation is timed; without it there are no latencies.
    var timesEachOperation = true

    /// Records one operation that started at `begin` (ns) and returns the time
    /// now; untimed, the time is read only every 64th operation (enough for
    /// `--duration`) and `begin` returned otherwise.
    @inline(__always)
    mutating func record(since begin: UInt64) -> UInt64 {
        ops += 1
        guard timesEachOperation else { return ops & 63 == 0 ? monotonicNanoseconds() : begin }
        let now = monotonicNanoseconds()
        _ = histogram.record(max(1, now &- begin))
        return now
    }
}

/// Runs `body` on `count` real threads released together; returns each thread's result.
func runThreads<T>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
    let slots = ThreadSlots<T>(count)
    let ready = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        let thread = Thread {
            ready.signal()
            go.wait()
            do { slots.tallies[index] = try body(index) } catch { slots.errors[index] = error }
            done.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    for _ in 0..<count { ready.wait() }
    for _ in 0..<count { go.signal() }
    done.wait()
    if let error = slots.errors.compactMap({ $0 }).first { throw error }
    return slots.tallies.map { $0! }
}

/// Each thread writes only its own slot; read after every thread is done.
final class ThreadSlots<T>: @unchecked Sendable {
    var tallies: [T?]
    var errors: [Error?]
    init(_ count: Int) { tallies = Array(repeating: nil, count: count); errors = Array(repeating: nil, count: count) }
}

/// A counter threads share (an `Atomic` cannot be captured by an escaping closure).
final class BenchCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// Runs db_bench workloads against one ShardDB instance.
final class BenchDriver: @unchecked Sendable {
    let plan: BenchPlan
    let directory: String
    private(set) var engine: ShardEngine?

    init(plan: BenchPlan, directory: String) {
        self.plan = plan
        self.directory = directory
    }

    var settings: BenchSettings { plan.settings }

    /// Opens the existing instance, or creates a fresh one (removing what was there).
    func open(fresh: Bool) throws -> ShardEngine {
        if let engine, !fresh { return engine }
        engine?.close()
        engine = nil
        let created: ShardEngine
        if fresh || !settings.useExistingDB {
            // Marked before the instance is created (create accepts a directory holding
            // only files RocksDB does not write), so a failed create leaves it bench's.
            try BenchDirectory.fresh(directory, option: "--db")
            created = try ShardEngine.create(at: directory, shards: settings.shards, partitioning: plan.partitioning,
                                             options: plan.engineOptions)
        } else {
            created = try ShardEngine.open(at: directory, options: plan.engineOptions)
        }
        engine = created
        return created
    }

    func close() {
        engine?.close()
        engine = nil
    }

    func run(_ workload: BenchWorkload) throws -> BenchResult {
        let engine = try open(fresh: workload.needsFreshDatabase)
        if workload.needsOrderedKeys, case .hash = engine.partitioning {
            throw ShardDBError(.invalidArgument, "\(workload.rawValue) needs key-ordered shards: use --partitioning range")
        }
        let s = settings
        let threads = switch workload {
        case .readwhilewriting: s.threads + 1
        case .waitforcompaction, .compact: 1
        default: s.threads
        }
        // With --duration the random workloads run until the deadline, whatever
        // --num or --reads say (db_bench's Duration: its seconds override the count).
        let deadline: UInt64? = s.duration > 0 ? UInt64(s.duration) * 1_000_000_000 : nil
        let writes = deadline == nil ? s.num : .max, reads = deadline == nil ? s.reads : .max
        let readersDone = BenchCounter()
        let tallies = try runThreads(threads) { index in
            var random = BenchRandom(seed: s.seed &+ UInt64(index) &* 0x9E37_79B9)
            switch workload {
            case .fillseq: return try self.write(engine, sequential: true, ops: s.num, deadline: nil, random: &random)
            case .fillrandom, .overwrite: return try self.write(engine, sequential: false, ops: writes, deadline: deadline, random: &random)
            case .readrandom: return try self.readRandom(engine, ops: reads, deadline: deadline, random: &random)
            case .readrandomwriterandom, .updaterandom:
                return try self.readWriteRandom(engine, update: workload == .updaterandom, ops: reads, deadline: deadline,
                                                random: &random)
            case .readseq: return try self.readSequential(engine, entries: s.reads)
            case .seekrandom: return try self.seekRandom(engine, ops: reads, deadline: deadline, random: &random)
            case .waitforcompaction: return try self.waitForCompaction(engine)
            case .compact: return try self.compact(engine)
            case .readwhilewriting:
                if index == 0 {
                    // db_bench's background writer: writes until every reader is done; not reported.
                    var tally = try self.write(engine, sequential: false, ops: .max, deadline: nil, random: &random) {
                        readersDone.value.load(ordering: .relaxed) >= threads - 1
                    }
                    tally.isBackgroundWriter = true
                    return tally
                }
                defer { readersDone.value.add(1, ordering: .relaxed) }
                return try self.readRandom(engine, ops: reads, deadline: deadline, random: &random)
            }
        }
        let measured = tallies.filter { !$0.isBackgroundWriter }
        let writer = tallies.first { $0.isBackgroundWriter }
        var result = BenchResult(name: workload.rawValue, threads: s.threads, tallies: measured)
        if workload.reportsFound { result.found = measured.reduce(0) { $0 + $1.found } }
        if workload == .readrandomwriterandom { result.writes = measured.reduce(0) { $0 + $1.writes } }
        if let writer { result.backgroundWrites = writer.ops }
        return result
    }

    // MARK: Workloads (one thread each)

    /// Waits for the background work the workloads before left (up to an hour):
    /// no operations, the time waited.
    func waitForCompaction(_ engine: ShardEngine) throws -> ThreadTally {
        var tally = ThreadTally()
        tally.start = monotonicNanoseconds()
        guard try engine.waitForBackgroundWork(timeoutSeconds: 3600) else {
            throw ShardDBError(.storage, "waitforcompaction: flushes or compactions still running after an hour")
        }
        tally.finish = monotonicNanoseconds()
        return tally
    }

    /// Compacts every shard into one sorted run (``ShardEngine/purgeExpired(shard:)``:
    /// the memtable flushed, all levels compacted, the bottommost rewritten, as
    /// db_bench's `compact` does): no operations, the time it took.
    func compact(_ engine: ShardEngine) throws -> ThreadTally {
        var tally = ThreadTally()
        tally.start = monotonicNanoseconds()
        _ = try engine.purgeExpired()
        tally.finish = monotonicNanoseconds()
        return tally
    }

    /// Puts `ops` keys (sequential, or uniform over `0..<num`), or until `deadline` / `stop()`.
    func write(_ engine: ShardEngine, sequential: Bool, ops: Int, deadline: UInt64?, random: inout BenchRandom,
               stop: () -> Bool = { false }) throws -> ThreadTally {
        let s = settings
        var values = BenchValues(minimumSize: s.valueSize)
        var tally = ThreadTally(timesEachOperation: s.histogram)
        let key = BenchKeys.buffer(size: s.keySize)
        defer { key.deallocate() }
        let storedKey = UnsafeRawBufferPointer(key)
        tally.start = monotonicNanoseconds()
        var now = tally.start
        var i = 0
        while i < ops {
            if i & 63 == 0, (deadline.map { now &- tally.start >= $0 } ?? false) || stop() { break }
            BenchKeys.write(sequential ? i : random.uniform(s.num), into: key)
            try values.withNext(s.valueSize) { value in try engine.put(storedKey, value) }
            now = tally.record(since: now)
            i += 1
        }
        tally.bytes = tally.ops * (s.keySize + s.valueSize)
        tally.finish = monotonicNanoseconds()
        return tally
    }

    /// Point reads of keys uniform over `0..<num`, zero-copy (db_bench reads into a pinnable slice).
    func readRandom(_ engine: ShardEngine, ops: Int, deadline: UInt64?, random: inout BenchRandom) throws -> ThreadTally {
        let s = settings
        var tally = ThreadTally(timesEachOperation: s.histogram)
        let key = BenchKeys.buffer(size: s.keySize)
        defer { key.deallocate() }
        let storedKey = UnsafeRawBufferPointer(key)
        tally.start = monotonicNanoseconds()
        var now = tally.start
        var i = 0
        while i < ops {
            if i & 63 == 0, let deadline, now &- tally.start >= deadline { break }
            BenchKeys.write(random.uniform(s.num), into: key)
            if let length = try engine.withValue(forKey: storedKey, { $0.count }) {
                tally.found += 1
                tally.bytes += s.keySize + length
            }
            now = tally.record(since: now)
            i += 1
        }
        tally.finish = monotonicNanoseconds()
        return tally
    }

    /// db_bench's readrandomwriterandom (`update` false) and updaterandom (`update` true)
    /// over keys uniform in `0..<num`, `ops` operations or until `deadline`.
    ///
    /// readrandomwriterandom: each operation is a read or a write; of each group of 100,
    /// the first `--readwritepercent` are reads, the rest writes, as db_bench orders them.
    /// updaterandom: each operation reads a key, then writes it (whether or not it was found).
    /// Reads are zero-copy, as db_bench's `Get` into a reused string costs no allocation.
    func readWriteRandom(_ engine: ShardEngine, update: Bool, ops: Int, deadline: UInt64?,
                         random: inout BenchRandom) throws -> ThreadTally {
        let s = settings
        var values = BenchValues(minimumSize: s.valueSize)
        var tally = ThreadTally(timesEachOperation: s.histogram)
        let key = BenchKeys.buffer(size: s.keySize)
        defer { key.deallocate() }
        let storedKey = UnsafeRawBufferPointer(key)
        tally.start = monotonicNanoseconds()
        var now = tally.start
        var readsLeft = 0, writesLeft = 0
        var i = 0
        while i < ops {
            if i & 63 == 0, let deadline, now &- tally.start >= deadline { break }
            BenchKeys.write(random.uniform(s.num), into: key)
            if readsLeft == 0 && writesLeft == 0 { (readsLeft, writesLeft) = (s.readWritePercent, 100 - s.readWritePercent) }
            let reads = update || readsLeft > 0
            if reads {
                if let length = try engine.withValue(forKey: storedKey, { $0.count }) {
                    tally.found += 1
                    tally.bytes += s.keySize + length
                }
                if !update { readsLeft -= 1 }
            }
            if update || !reads {
                try values.withNext(s.valueSize) { value in try engine.put(storedKey, value) }
                tally.bytes += s.keySize + s.valueSize
                if !update {
                    writesLeft -= 1
                    tally.writes += 1
                }
            }
            now = tally.record(since: now)
            i += 1
        }
        tally.finish = monotonicNanoseconds()
        return tally
    }

    /// One ordered pass over up to `entries` entries (db_bench's readseq); latency (unless
    /// `--histogram false`) is recorded per entry as the mean of each run of 1024, since
    /// timing every entry would cost more than reading it.
    func readSequential(_ engine: ShardEngine, entries: Int) throws -> ThreadTally {
        let timed = settings.histogram
        var tally = ThreadTally(timesEachOperation: timed)
        tally.start = monotonicNanoseconds()
        var chunkStart = tally.start
        var inChunk: UInt64 = 0, count = 0
        try engine.scan(ScanRequest(limit: entries)) { entry in
            tally.bytes &+= entry.key.count &+ entry.value.count
            count &+= 1
            inChunk &+= 1
            if inChunk == 1024 {
                if timed {
                    let now = monotonicNanoseconds()
                    _ = tally.histogram.record(max(1, (now &- chunkStart) / 1024), count: 1024)
                    chunkStart = now
                }
                inChunk = 0
            }
            return true
        }
        let now = monotonicNanoseconds()
        if timed, inChunk > 0 { _ = tally.histogram.record(max(1, (now &- chunkStart) / inChunk), count: inChunk) }
        tally.ops = count
        tally.finish = now
        return tally
    }

    /// A seek to a random key (a new iterator each time, as db_bench does without tailing),
    /// reading the entry found there.
    func seekRandom(_ engine: ShardEngine, ops: Int, deadline: UInt64?, random: inout BenchRandom) throws -> ThreadTally {
        let s = settings
        var tally = ThreadTally(timesEachOperation: s.histogram)
        tally.start = monotonicNanoseconds()
        var now = tally.start
        var i = 0
        while i < ops {
            if i & 63 == 0, let deadline, now &- tally.start >= deadline { break }
            let target = BenchKeys.key(random.uniform(s.num), size: s.keySize)
            try engine.scan(ScanRequest(start: target, limit: 1)) { entry in
                if entry.key.elementsEqual(target) { tally.found += 1 }
                tally.bytes &+= entry.key.count &+ entry.value.count
                return false
            }
            now = tally.record(since: now)
            i += 1
        }
        tally.finish = monotonicNanoseconds()
        return tally
    }
}
