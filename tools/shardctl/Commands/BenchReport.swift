import Foundation
import Histogram

/// One workload's measurement, aggregated over its threads the way db_bench
/// does: operations summed, time from the first thread's start to the last
/// thread's finish.
struct BenchResult: Encodable {
    var name: String
    var threads: Int
    var ops: Int
    var seconds: Double
    var opsPerSecond: Double
    var mbPerSecond: Double
    /// Absent when no operation was timed (`--histogram false`, waitforcompaction, compact).
    var latencyMicros: Latency?
    /// Reads that found a value (readrandom, readwhilewriting, seekrandom,
    /// readrandomwriterandom, updaterandom).
    var found: Int?
    /// readrandomwriterandom's writes (counted in `ops`; the rest are reads).
    var writes: Int?
    /// Writes by readwhilewriting's background writer (not counted in `ops`).
    var backgroundWrites: Int?

    struct Latency: Encodable {
        var p50: Double
        var p99: Double
        var p999: Double
        var max: Double
    }

    init(name: String, threads: Int, tallies: [ThreadTally]) {
        self.name = name
        self.threads = threads
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000,
                                          numberOfSignificantValueDigits: .three)
        var bytes = 0
        ops = 0
        for tally in tallies {
            histogram.add(tally.histogram)
            ops += tally.ops
            bytes += tally.bytes
        }
        let start = tallies.map(\.start).min() ?? 0
        let finish = tallies.map(\.finish).max() ?? 0
        seconds = Double(finish &- start) / 1e9
        opsPerSecond = seconds > 0 ? Double(ops) / seconds : 0
        mbPerSecond = seconds > 0 ? Double(bytes) / 1_048_576 / seconds : 0
        func micros(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 1000 * 100).rounded() / 100 }
        latencyMicros = histogram.totalCount == 0 ? nil
            : Latency(p50: micros(histogram.valueAtPercentile(50)), p99: micros(histogram.valueAtPercentile(99)),
                      p999: micros(histogram.valueAtPercentile(99.9)), max: micros(histogram.max))
    }
}

/// The `--json` document: the settings and one result per workload.
struct BenchReport: Encodable {
    var settings: BenchSettings
    var results: [BenchResult]

    static let columns = ["workload", "threads", "ops", "seconds", "ops/s", "MB/s", "p50 us", "p99 us", "p99.9 us", "found"]

    /// Prints one aligned table row (and the header first), as each workload finishes.
    static func printRow(_ result: BenchResult, header: Bool) {
        let widths = [18, 7, 10, 8, 11, 8, 9, 9, 9, 10]
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: max(0, widths[i] - cell.count)) + cell
            }.joined(separator: " ")
        }
        if header { print(line(columns)) }
        func latency(_ field: KeyPath<BenchResult.Latency, Double>) -> String {
            result.latencyMicros.map { String(format: "%.2f", $0[keyPath: field]) } ?? "-"
        }
        var found = result.found.map { "\($0)" } ?? "-"
        if let writes = result.backgroundWrites { found += " (+\(writes) writes)" }
        if let writes = result.writes { found += " (\(writes) writes)" }
        print(line([
            result.name, "\(result.threads)", "\(result.ops)", String(format: "%.2f", result.seconds),
            String(format: "%.0f", result.opsPerSecond), String(format: "%.1f", result.mbPerSecond),
            latency(\.p50), latency(\.p99), latency(\.p999), found,
        ]))
        fflush(stdout)
    }
}
