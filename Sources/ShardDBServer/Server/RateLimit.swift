import Foundation
import ShardDB

/// A byte rate (`200MB/s`, `50MiB/s`, `1GB/s`, `800B/s`).
public struct ByteRate: Sendable, Equatable, CustomStringConvertible {
    public var bytesPerSecond: Int

    /// At least 1 byte per second (0 or less would divide by zero when waiting).
    public init(bytesPerSecond: Int) { self.bytesPerSecond = max(1, bytesPerSecond) }

    /// The highest rate accepted: 1 PB/s, far past any link, far below `Int.max`.
    public static let maximum = 1e15

    /// Parses `N unit[/s]` with unit B, kB (or KB), MB, GB (powers of 1000) or KiB,
    /// MiB, GiB (powers of 1024). The unit is required and ends in a capital B:
    /// a bare number (bytes? megabytes?) or a lowercase b (bits, by convention)
    /// would be read a thousand or eight times off.
    ///
    /// - throws: `.invalidArgument` for anything else or a rate that is not positive.
    public init(parsing text: String) throws {
        var body = text.trimmingCharacters(in: .whitespaces)
        if body.lowercased().hasSuffix("/s") { body = String(body.dropLast(2)) }
        let digits = body.prefix { $0.isNumber || $0 == "." }
        let unit = body.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let scale: Double? = ["b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
                              "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824][unit.lowercased()]
        guard let number = Double(digits), let scale, unit.hasSuffix("B") else {
            let hint = unit.isEmpty ? " (give a unit: B, kB, MB, GB, KiB, MiB or GiB)"
                : unit.hasSuffix("b") ? " (a lowercase b means bits; bytes are B)" : ""
            throw ShardDBError(.invalidArgument, "rate '\(text)' is not like 200MB/s\(hint)")
        }
        guard number * scale >= 1 else {
            throw ShardDBError(.invalidArgument, "rate '\(text)' must be at least 1 byte per second (leave the limit out for none)")
        }
        guard number * scale <= Self.maximum else {
            throw ShardDBError(.invalidArgument, "rate '\(text)' is more than \(Int(Self.maximum / 1e9)) GB/s (leave the limit out for none)")
        }
        bytesPerSecond = Int(number * scale)
    }

    public var description: String { String(format: "%.1f MB/s", Double(bytesPerSecond) / 1e6) }
}

/// A token bucket shared by every bulk stream a server sends: a stream waits
/// before a chunk until the rate allows it (bursts up to one second's worth).
actor BulkRateLimiter {
    private let rate: Double
    private var available: Double
    private var last = ContinuousClock.now

    private let longestWait: Double

    init(_ rate: ByteRate, longestWaitSeconds: Double = BulkRateLimiter.longestWaitSeconds) {
        // (bytesPerSecond is a var: 0 set after init would divide by zero when waiting.)
        self.rate = Double(max(1, rate.bytesPerSecond))
        self.available = self.rate
        self.longestWait = longestWaitSeconds
    }

    /// The longest a chunk waits (by default): a chunk bigger than this many seconds' worth goes
    /// out after it (faster than the rate), so that it arrives within a call's
    /// deadline (60 s by default). Without the cap such a chunk never arrived, and
    /// every retry of it added its bytes to the debt the next one waited for.
    static let longestWaitSeconds = 30.0

    /// Takes `bytes` from the bucket, sleeping while it is in debt (at most
    /// ``longestWaitSeconds``).
    func acquire(_ bytes: Int) async throws {
        let now = ContinuousClock.now
        let elapsed = now - last
        last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        available = max(min(rate, available + seconds * rate) - Double(bytes), -rate * longestWait)
        if available < 0 {
            try await Task.sleep(for: .seconds(-available / rate))
        }
    }
}
