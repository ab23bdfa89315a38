import Foundation
import ShardDB
import XCTest

/// ``AllocatorTuning``: a chunk-sized buffer allocated again after being freed
/// reuses the heap's pages instead of faulting in fresh ones.
final class AllocatorTuningTests: XCTestCase {
    private func minorFaults() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_minflt
    }

    func testReallocatedChunkBuffersReuseTheirPages() throws {
        #if !canImport(Glibc)
        throw XCTSkip("glibc only")
        #else
        XCTAssertTrue(AllocatorTuning.tuneForBulkCopies())
        XCTAssertTrue(AllocatorTuning.tuneForBulkCopies(), "idempotent")
        // As in a bulk copy: a few chunk buffers alive at once, then freed, again and again.
        let size = 4 << 20, live = 4, rounds = 20
        let pages = size / Int(sysconf(Int32(_SC_PAGESIZE)))
        let before = minorFaults()
        for round in 0..<rounds {
            var buffers: [UnsafeMutableRawPointer] = []
            for _ in 0..<live {
                let buffer = try XCTUnwrap(malloc(size))
                memset(buffer, Int32(round & 0xFF), size)  // touch every page
                buffers.append(buffer)
            }
            buffers.forEach { free($0) }
        }
        let faults = minorFaults() - before
        // Untuned, glibc hands the freed heap top back to the kernel each round
        // (it is past the trim threshold) and the next round faults it in again:
        // about rounds × live × pages faults (20,480 here). Tuned, the first round
        // faults the pages in and the others reuse them (the margin is for
        // whatever else the test process does meanwhile).
        XCTAssertLessThan(faults, pages * live * 3, "\(faults) minor faults for \(rounds) rounds of \(live) × \(pages) pages")
        #endif
    }
}
