import Foundation
import Histogram
import ShardDB

// Shared pieces of the migration, checkpoint and TTL benchmarks.

/// Monotonic nanoseconds.
@inline(__always)
func monotonicNanos() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// A writer thread issuing puts at a fixed rate, recording each put's latency
/// (from its scheduled start, so a stall counts fully) into the histogram of
/// the current phase. Keys it writes are remembered with their last value so
/// a benchmark can verify them afterwards.
final class PacedWriter: @unchecked Sendable {
    let engines: [ShardEngine]
    let rate: Int
    let keySpace: Int
    let valueSize: Int
    fileprivate let lock = NSLock()
    private var histograms: [String: Histogram<UInt64>] = [:]
    private var phase = "baseline"
    private var stopped = false
    private var running = false
    private(set) var writes = 0
    fileprivate(set) var redirected = 0
    private(set) var failure: Error?

    init(engines: [ShardEngine], rate: Int, keySpace: Int, valueSize: Int) {
        self.engines = engines
        self.rate = rate
        self.keySpace = keySpace
        self.valueSize = valueSize
    }

    func setPhase(_ name: String) { lock.withLock { phase = name } }
    func stop() { lock.withLock { stopped = true } }
    var isRunning: Bool { lock.withLock { running } }

    func histogram(_ name: String) -> Histogram<UInt64>? { lock.withLock { histograms[name] } }

    func start() {
        lock.withLock { running = true }
        Thread { self.run() }.start()
    }

    private func run() {
        defer { lock.withLock { running = false } }
        let interval = UInt64(1_000_000_000 / max(1, rate))
        var next = monotonicNanos()
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        var value = [UInt8](repeating: 0x61, count: valueSize)
        var order = 0
        while !lock.withLock({ stopped }) {
            let now = monotonicNanos()
            if now < next {
                if next - now > 200_000 { usleep(UInt32((next - now) / 2000)) }
                continue
            }
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let key = Array("key\(Int((state >> 33) % UInt64(keySpace)))".utf8)
            order += 1
            withUnsafeBytes(of: order) { stamp in value.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: stamp[0..<min(8, valueSize)])) } }
            do {
                try putFollowingOwner(key, value)
            } catch {
                lock.withLock { failure = error; stopped = true }
                return
            }
            let latency = max(1, monotonicNanos() &- next)
            lock.withLock {
                writes += 1
                if histograms[phase] == nil {
                    histograms[phase] = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000,
                                                          numberOfSignificantValueDigits: .three)
                }
                _ = histograms[phase]!.record(latency)
            }
            next &+= interval
            // Far behind (a long stall): do not try to catch up with a burst.
            if monotonicNanos() > next &+ 1_000_000_000 { next = monotonicNanos() }
        }
    }
}

extension PacedWriter {
    /// Puts on whichever engine owns the key, following "moved to" answers (a
    /// cutover can complete between two tries, so go round a few times).
    fileprivate func putFollowingOwner(_ key: [UInt8], _ value: [UInt8]) throws {
        var lastError: Error?
        for _ in 0..<4 {
            for engine in engines {
                do {
                    try engine.put(key, value)
                    return
                } catch let error as ShardDBError where error.code == .keyNotOwned {
                    lock.withLock { redirected += 1 }
                    lastError = error
                }
            }
        }
        throw lastError!
    }
}

/// Latency percentiles in milliseconds.
struct LatencySummary: Encodable {
    var count: UInt64
    var p50: Double
    var p99: Double
    var p999: Double
    var max: Double

    init(_ histogram: Histogram<UInt64>?) {
        guard let h = histogram, h.totalCount > 0 else { count = 0; p50 = 0; p99 = 0; p999 = 0; max = 0; return }
        func ms(_ ns: UInt64) -> Double { (Double(ns) / 1e6 * 1000).rounded() / 1000 }
        count = h.totalCount
        p50 = ms(h.valueAtPercentile(50)); p99 = ms(h.valueAtPercentile(99))
        p999 = ms(h.valueAtPercentile(99.9)); max = ms(h.max)
    }

    init(millis values: [Double]) {
        let sorted = values.sorted()
        func at(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
            return sorted[Swift.min(sorted.count - 1, Swift.max(0, rank - 1))]
        }
        count = UInt64(sorted.count)
        p50 = at(50); p99 = at(99); p999 = at(99.9); max = sorted.last ?? 0
    }

    var text: String { String(format: "p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%llu samples)", p50, p99, p999, max, count) }
}

/// Fills `engine` with `count` keys `key0…` of `valueSize` random-ish bytes, in batches.
func fillForBench(_ engine: ShardEngine, count: Int, valueSize: Int, progress: ProgressLine, label: String) throws {
    var state: UInt64 = 88172645463325252
    var value = [UInt8](repeating: 0, count: valueSize)
    var done = 0
    while done < count {
        let batch = engine.makeWriteBatch()
        for i in done..<min(count, done + 1000) {
            // Incompressible-ish values so sizes on disk are real.
            var j = 0
            while j < valueSize {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                withUnsafeBytes(of: state) { word in
                    for b in word where j < valueSize { value[j] = b; j += 1 }
                }
            }
            try batch.put(Array("key\(i)".utf8), value)
        }
        try engine.write(batch)
        done = min(count, done + 1000)
        progress.update("\(label): \(done)/\(count) keys")
    }
    progress.finish()
}

/// Total size of the regular files under `path`.
func directoryBytes(_ path: String, suffix: String? = nil) -> Int {
    guard let walker = FileManager.default.enumerator(atPath: path) else { return 0 }
    var total = 0
    for case let name as String in walker where suffix.map({ name.hasSuffix($0) }) ?? true {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name)
        if (attributes?[.type] as? FileAttributeType) == .typeRegular { total += (attributes?[.size] as? Int) ?? 0 }
    }
    return total
}

/// Seconds `cp -r source destination && sync` takes: the plain-copy reference,
/// made durable like the operations it is compared with.
func timeCopy(_ source: String, _ destination: String) throws -> Double {
    let start = monotonicNanos()
    for arguments in [["/bin/cp", "-r", source, destination], ["/bin/sync"]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ShardDBError(.storage, "\(arguments.joined(separator: " ")) failed") }
    }
    return Double(monotonicNanos() - start) / 1e9
}

/// Seconds `cp` of the table files (`*.sst`) directly in `source` into a new
/// `destination` directory, then `sync`, take: the plain copy of a shard's SST
/// files a migration's bulk copy is compared with. Returns the bytes copied too.
func timeTableFileCopy(_ source: String, _ destination: String) throws -> (seconds: Double, bytes: Int) {
    let files = try FileManager.default.contentsOfDirectory(atPath: source).filter { $0.hasSuffix(".sst") }.sorted()
    guard !files.isEmpty else { throw ShardDBError(.storage, "\(source) has no table files to copy") }
    do { try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true) } catch {
        throw ShardDBError(.notWritable, "cannot create \(destination): \(ShardDBError.fileSystemReason(error))")
    }
    let start = monotonicNanos()
    for arguments in [["/bin/cp"] + files.map { source + "/" + $0 } + [destination], ["/bin/sync"]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ShardDBError(.storage, "\(arguments[0]) failed") }
    }
    let seconds = Double(monotonicNanos() - start) / 1e9
    return (seconds, directoryBytes(destination, suffix: ".sst"))
}

