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
        XCTAssertTrue(CheckpointStore.mountPoints().contains(Array("/proc".utf8)))
        XCTAssertFalse(CheckpointStore.mountPoints().contains(Array(plain.utf8)))
    }

    /// A target that does not exist yet is resolved through its parent, so a
    /// symbolic link on the way (into the store, say) is seen.
    func testATargetIsResolvedThroughItsParent() throws {
        let directory = TemporaryDirectory()
        let real = directory.path("real")
        try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory.path("link"), withDestinationPath: real)
        let resolvedReal = try XCTUnwrap(realpath(real, nil).map { pointer in defer { free(pointer) }; return String(cString: pointer) })
        XCTAssertEqual(CheckpointStore.resolvingParent(of: directory.path("link") + "/new"), resolvedReal + "/new")
        XCTAssertEqual(CheckpointStore.resolvingParent(of: "/"), "/")
    }
}
