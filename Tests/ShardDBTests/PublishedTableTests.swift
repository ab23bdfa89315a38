import Foundation
@testable import ShardDB
import XCTest

/// The lock-free routing table: a replaced table is released once no reader
/// can hold it, and never while one does.
final class PublishedTableTests: XCTestCase {
    private func table(_ generation: UInt64) -> RoutingTable {
        RoutingTable(partitioning: .hash(keyGroups: 16), shards: [], generation: generation)
    }

    func testAReplacedTableIsReleasedWhenNoReaderHoldsIt() {
        weak var first: RoutingTable?
        let published: PublishedTable = {
            let t = table(1)
            first = t
            return PublishedTable(t)
        }()
        XCTAssertNotNil(first, "the published table is retained")
        XCTAssertEqual(published.read { $0.generation }, 1)
        published.publish(table(2))
        XCTAssertEqual(published.read { $0.generation }, 2)
        XCTAssertNil(first, "no reader held the replaced table, so it was released at once")
        XCTAssertEqual(published.retiredCount, 0)
    }

    func testATableAReaderHoldsOutlivesItsReplacement() {
        weak var first: RoutingTable?
        weak var second: RoutingTable?
        let published: PublishedTable = {
            let t = table(1)
            first = t
            return PublishedTable(t)
        }()
        published.read { held in
            // A replacement from inside a read (the caller's own, counted in) cannot
            // wait it out: the table stays until a later replacement.
            let t = table(2)
            second = t
            published.publish(t)
            XCTAssertEqual(published.retiredCount, 1)
            XCTAssertNotNil(first)
            XCTAssertEqual(held.generation, 1, "still readable")
            XCTAssertEqual(published.read { $0.generation }, 2, "a nested read sees the new table")
        }
        published.publish(table(3))
        XCTAssertEqual(published.retiredCount, 0, "released once the reader counted out")
        XCTAssertNil(first)
        XCTAssertNil(second)
    }

    /// Readers on several threads while tables are replaced under them: each
    /// sees the generations in order, none sees a released table (its
    /// generation would be garbage or the read would crash), and once the
    /// readers stop every replaced table is released.
    func testConcurrentReadersSeeTablesInOrderAndAllAreReleased() {
        let published = PublishedTable(table(0))
        let stop = ManagedAtomicFlag()
        let replacements: UInt64 = 500
        let readers = 3
        let failures = LockedCounter()
        let group = DispatchGroup()
        for _ in 0..<readers {
            DispatchQueue.global().async(group: group) {
                var last: UInt64 = 0
                while !stop.isSet {
                    let generation = published.read { table in table.keyGroups == 16 ? table.generation : UInt64.max }
                    if generation < last || generation > replacements { failures.add() }
                    last = generation
                }
            }
        }
        for generation in 1...replacements { published.publish(table(generation)) }
        stop.set()
        group.wait()
        XCTAssertEqual(failures.value, 0)
        published.publish(table(replacements))
        XCTAssertEqual(published.retiredCount, 0)
    }
}

private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func add() { lock.withLock { count += 1 } }
}
