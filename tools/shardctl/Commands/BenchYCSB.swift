import Foundation
import ShardDB
import Synchronization

/// YCSB's core workloads A–F (workloads/workloada ... workloadf in YCSB):
/// operation proportions and request distributions as there, 1 KB records
/// (10 fields of 100 bytes, stored as one value), hashed insert order.
struct YCSBWorkload {
    enum Distribution: String { case zipfian, latest, uniform }
    enum Operation: Int, CaseIterable {
        case read, update, insert, scan, readModifyWrite
        var name: String { ["read", "update", "insert", "scan", "rmw"][rawValue] }
    }

    /// fieldcount (10) x fieldlength (100).
    static let recordSize = 1000
    /// YCSB's maxscanlength; scan lengths are uniform in 1...this.
    static let maxScanLength = 100

    let name: String
    /// Cumulative proportions, in `Operation` order.
    let proportions: [(Operation, Double)]
    let distribution: Distribution

    init?(name: String) {
        self.name = name
        switch name.lowercased() {
        case "ycsb-a": proportions = [(.read, 0.5), (.update, 0.5)]; distribution = .zipfian
        case "ycsb-b": proportions = [(.read, 0.95), (.update, 0.05)]; distribution = .zipfian
        case "ycsb-c": proportions = [(.read, 1.0)]; distribution = .zipfian
        case "ycsb-d": proportions = [(.read, 0.95), (.insert, 0.05)]; distribution = .latest
        case "ycsb-e": proportions = [(.scan, 0.95), (.insert, 0.05)]; distribution = .zipfian
        case "ycsb-f": proportions = [(.read, 0.5), (.readModifyWrite, 0.5)]; distribution = .zipfian
        default: return nil
        }
    }

    /// Workload E scans key ranges, which needs key-ordered shards.
    var needsOrderedKeys: Bool { proportions.contains { $0.0 == .scan } }

    func operation(_ u: Double) -> Operation {
        var sum = 0.0
        for (operation, share) in proportions {
            sum += share
            if u < sum { return operation }
        }
        return proportions.last!.0
    }

    /// YCSB's key for a record number: "user" + FNV-1a 64 of the number (insertorder=hashed).
    static func key(_ keynum: Int) -> [UInt8] {
        Array("user\(fnv64(UInt64(keynum)))".utf8)
    }

    /// YCSB's `Utils.fnvhash64`: FNV-1a over the 8 low-order-first bytes, absolute value.
    static func fnv64(_ value: UInt64) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var v = value
        for _ in 0..<8 {
            hash ^= v & 0xFF
            v >>= 8
            hash = hash &* 1_099_511_628_211
        }
        let signed = Int64(bitPattern: hash)
        return signed == .min ? UInt64(bitPattern: signed) : UInt64(abs(signed))
    }
}

/// YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record
/// synthetic databases"), constant 0.99, with its incremental zeta when the
/// item count grows (used by the "latest" distribution).
struct ZipfianGenerator {
    static let theta = 0.99
    private(set) var items: Int
    private var zetan: Double
    private let zeta2theta: Double
    private let alpha: Double
    private var eta: Double

    init(items: Int, zetan: Double? = nil) {
        self.items = items
        zeta2theta = Self.zeta(from: 0, to: 2, initial: 0)
        alpha = 1 / (1 - Self.theta)
        self.zetan = zetan ?? Self.zeta(from: 0, to: items, initial: 0)
        eta = 0
        eta = computeEta()
    }

    static func zeta(from start: Int, to end: Int, initial: Double) -> Double {
        var sum = initial
        if start < end { for i in start..<end { sum += 1 / pow(Double(i + 1), theta) } }
        return sum
    }

    private func computeEta() -> Double {
        (1 - pow(2 / Double(items), 1 - Self.theta)) / (1 - zeta2theta / zetan)
    }

    /// A value in `0..<items`, small values most likely.
    mutating func next(_ random: inout BenchRandom) -> Int {
        let u = random.unit()
        let uz = u * zetan
        if uz < 1 { return 0 }
        if uz < 1 + pow(0.5, Self.theta) { return 1 }
        return min(items - 1, Int(Double(items) * pow(eta * u - eta + 1, alpha)))
    }

    /// As YCSB's `nextValue(itemcount)`: grows the item count (incrementally) first.
    mutating func next(items newItems: Int, _ random: inout BenchRandom) -> Int {
        if newItems > items {
            zetan = Self.zeta(from: items, to: newItems, initial: zetan)
            items = newItems
            eta = computeEta()
        }
        return next(&random)
    }
}

/// Loads and runs one YCSB workload.
struct YCSBRunner {
    let driver: BenchDriver
    let workload: YCSBWorkload
    let recordCount: Int
    let operationCount: Int

    /// YCSB's ScrambledZipfianGenerator: a zipfian over 10^10 items (with its
    /// precomputed zeta), hashed onto the records so popular keys are spread out.
    static let scrambledItemCount = 10_000_000_000
    static let scrambledZetan = 26.46902820178302

    func run() throws -> [BenchResult] {
        let engine = try driver.open(fresh: !driver.settings.useExistingDB)
        let threads = driver.settings.threads
        let seed = driver.settings.seed
        let recordCount = self.recordCount
        let workload = self.workload

        // Load: each thread inserts every threads-th record.
        let loadTallies = try runThreads(threads) { index -> ThreadTally in
            var values = BenchValues(minimumSize: YCSBWorkload.recordSize)
            var tally = ThreadTally()
            tally.start = monotonicNanoseconds()
            var now = tally.start
            for keynum in stride(from: index, to: recordCount, by: threads) {
                let key = YCSBWorkload.key(keynum)
                try values.withNext(YCSBWorkload.recordSize) { try engine.put(key, $0) }
                tally.bytes += key.count + YCSBWorkload.recordSize
                now = tally.record(since: now)
            }
            tally.finish = now
            return tally
        }

        // Run: operationcount operations over all threads.
        let inserted = AcknowledgedCounter(acknowledgedThrough: recordCount - 1)
        let expectedNewKeys = Int(Double(operationCount) * (workload.proportions.first { $0.0 == .insert }?.1 ?? 0) * 2)
        let operationCount = self.operationCount
        let runTallies = try runThreads(threads) { index -> [ThreadTally] in
            var random = BenchRandom(seed: seed &+ 0x5EED &+ UInt64(index) &* 0x9E37_79B9)
            var values = BenchValues(minimumSize: YCSBWorkload.recordSize)
            var scrambled = ZipfianGenerator(items: Self.scrambledItemCount, zetan: Self.scrambledZetan)
            var latest = ZipfianGenerator(items: recordCount)
            var tallies = Array(repeating: ThreadTally(timesEachOperation: driver.settings.histogram),
                                count: YCSBWorkload.Operation.allCases.count)
            let ops = operationCount / threads + (index < operationCount % threads ? 1 : 0)

            func chooseKeynum() -> Int {
                let last = inserted.last
                switch workload.distribution {
                case .uniform:
                    return random.uniform(last + 1)
                case .latest:
                    return max(0, last - latest.next(items: last + 1, &random))
                case .zipfian:
                    // YCSB draws over the records plus the inserts it expects, retrying past the last one.
                    let items = recordCount + expectedNewKeys
                    while true {
                        let keynum = Int(YCSBWorkload.fnv64(UInt64(scrambled.next(&random))) % UInt64(items))
                        if keynum <= last { return keynum }
                    }
                }
            }

            let start = monotonicNanoseconds()
            for i in 0..<tallies.count { tallies[i].start = start }
            let timed = tallies[0].timesEachOperation
            var now = start
            for _ in 0..<ops {
                // The operation and its key are chosen outside the sample: YCSB times the database call.
                let operation = workload.operation(random.unit())
                let keynum = operation == .insert ? inserted.next() : chooseKeynum()
                let key = YCSBWorkload.key(keynum)
                let scanLength = operation == .scan ? 1 + random.uniform(YCSBWorkload.maxScanLength) : 0
                let begin = timed ? monotonicNanoseconds() : now
                var bytes = 0
                switch operation {
                case .read:
                    if let length = try engine.withValue(forKey: key, { $0.count }) {
                        bytes = key.count + length
                        tallies[operation.rawValue].found += 1
                    }
                case .update:
                    try values.withNext(YCSBWorkload.recordSize) { try engine.put(key, $0) }
                    bytes = key.count + YCSBWorkload.recordSize
                case .insert:
                    // Acknowledged even if the put fails (the run then ends): reads must not wait on it.
                    defer { inserted.acknowledge(keynum) }
                    try values.withNext(YCSBWorkload.recordSize) { try engine.put(key, $0) }
                    bytes = key.count + YCSBWorkload.recordSize
                case .scan:
                    try engine.scan(ScanRequest(start: key, limit: scanLength)) { entry in
                        bytes &+= entry.key.count &+ entry.value.count
                        return true
                    }
                case .readModifyWrite:
                    if let length = try engine.withValue(forKey: key, { $0.count }) {
                        bytes = key.count + length
                        tallies[operation.rawValue].found += 1
                    }
                    try values.withNext(YCSBWorkload.recordSize) { try engine.put(key, $0) }
                    bytes += key.count + YCSBWorkload.recordSize
                }
                tallies[operation.rawValue].bytes += bytes
                now = tallies[operation.rawValue].record(since: begin)
            }
            for i in 0..<tallies.count { tallies[i].finish = now }
            return tallies
        }

        var results = [BenchResult(name: "\(workload.name) load", threads: threads, tallies: loadTallies)]
        results.append(BenchResult(name: "\(workload.name) run", threads: threads, tallies: runTallies.flatMap { $0 }))
        for operation in YCSBWorkload.Operation.allCases {
            let tallies = runTallies.map { $0[operation.rawValue] }
            guard tallies.contains(where: { $0.ops > 0 }) else { continue }
            var result = BenchResult(name: "  \(operation.name)", threads: threads, tallies: tallies)
            if operation == .read || operation == .readModifyWrite { result.found = tallies.reduce(0) { $0 + $1.found } }
            results.append(result)
        }
        return results
    }
}

/// YCSB's AcknowledgedCounterGenerator: inserts take the next key number, and
/// reads choose among the keys up to the highest one below which every insert
/// has finished (``last``), so a "latest" read never asks for a key still being
/// written by another thread.
final class AcknowledgedCounter: Sendable {
    private let issued: Atomic<Int>
    private let limit: Atomic<Int>
    private let pending = Mutex<Set<Int>>([])

    /// Key numbers through `acknowledgedThrough` exist (the load).
    init(acknowledgedThrough: Int) {
        issued = Atomic(acknowledgedThrough + 1)
        limit = Atomic(acknowledgedThrough)
    }

    /// The next key number to insert.
    func next() -> Int { issued.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// The highest key number below which (and at which) every insert finished.
    var last: Int { limit.load(ordering: .acquiring) }

    /// Records that the insert of `keynum` finished.
    func acknowledge(_ keynum: Int) {
        pending.withLock { done in
            done.insert(keynum)
            var through = limit.load(ordering: .relaxed)
            while done.remove(through + 1) != nil { through += 1 }
            limit.store(through, ordering: .releasing)
        }
    }
}
