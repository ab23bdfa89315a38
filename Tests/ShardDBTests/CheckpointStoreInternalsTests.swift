import Foundation
@testable import ShardDB
import XCTest

/// Helpers of ``CheckpointStore`` that need a system state tests cannot make
/// (an empty mount point takes privileges): checked on what every Linux has.
final class CheckpointStoreInternalsTests: XCTestCase {
    /// A restore refuses a mount point before copying (it cannot replace one);
    /// this is how one is recognised.
    func testMountPointsAreRecognised() throws {
        XCTAssertTrue(CheckpointStore.isMountPoint("/"), "the root")
        XCTAssertTrue(CheckpointStore.isMountPoint("/proc"), "procfs is mounted on /proc")
        let directory = TemporaryDirectory()
        let plain = directory.path("plain")
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        XCTAssertFalse(CheckpointStore.isMountPoint(plain))
        XCTAssertFalse(CheckpointStore.isMountPoint(directory.path("missing")))
        // The mount table is read (bind mounts keep their parent's device): /proc is in it.
        XCTAssertTrue(CheckpointStore.mountPoints().contains("/proc"), "\(CheckpointStore.mountPoints())")
        XCTAssertFalse(CheckpointStore.mountPoints().contains(plain))
    }
}
