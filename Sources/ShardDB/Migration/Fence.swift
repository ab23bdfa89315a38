import Foundation

/// A key range whose reads and writes are held while a migration cuts over.
///
/// Installed on the source when the cutover begins; resolved when the target
/// has committed (callers then learn the new owner) or the migration aborts
/// (callers proceed as if nothing happened).
final class Fence: @unchecked Sendable {
    enum Outcome: Equatable {
        case committed(owner: String)
        case released
    }

    let range: ShardRange
    let migrationID: String
    private let condition = NSCondition()
    private var outcome: Outcome?  // guarded by `condition`

    init(range: ShardRange, migrationID: String) {
        self.range = range
        self.migrationID = migrationID
    }

    /// The longest wait: Foundation turns a deadline into nanoseconds in an Int64,
    /// which a larger one (or infinity) overflows, trapping.
    static let longestWaitSeconds: TimeInterval = 365 * 24 * 3600

    /// Waits until the fence is resolved or `timeout` passes (nil then); a negative
    /// or NaN timeout only looks, one over a year (infinity) waits a year.
    func wait(timeout: TimeInterval) -> Outcome? {
        let seconds = timeout.isNaN ? 0 : min(max(timeout, 0), Self.longestWaitSeconds)
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while outcome == nil {
            if !condition.wait(until: deadline) { break }
        }
        return outcome
    }

    func resolve(_ outcome: Outcome) {
        condition.lock()
        self.outcome = outcome
        condition.broadcast()
        condition.unlock()
    }

    /// True if the fence covers `key` (stored-key space not needed: key group or raw key).
    @inline(__always)
    func covers(keyGroup: Int?, key: UnsafeRawBufferPointer) -> Bool {
        switch range {
        case .keyGroups(let r): return keyGroup.map(r.contains) ?? false
        case let .keys(lower, upper):
            return RoutingTable.compare(key, lower) >= 0 && (upper.map { RoutingTable.compare(key, $0) < 0 } ?? true)
        }
    }
}

/// Thrown inside routing when a key is fenced; the caller waits and retries.
struct FenceHit: Error {
    let fence: Fence
}
