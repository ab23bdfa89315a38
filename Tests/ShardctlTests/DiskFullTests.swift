import Foundation
import ShardDB
import XCTest

/// An instance on a small tmpfs: writes fail with a typed error when the disk is
/// (nearly) full, and after space is freed nothing acknowledged is lost.
/// Needs root (mount); skipped with a message otherwise.
final class DiskFullTests: ShardctlTestCase {
    private var mountPoint: String?

    override func setUpWithError() throws {
        try super.setUpWithError()
        let directory = path("tmpfs")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=8m", "tmpfs", directory]
        mount.standardError = FileHandle.nullDevice
        try? mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else {
            throw XCTSkip("cannot mount a tmpfs at \(directory) (needs root or CAP_SYS_ADMIN); disk-full tests skipped")
        }
        mountPoint = directory
    }

    override func tearDownWithError() throws {
        if let mountPoint {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint]
            try umount.run()
            umount.waitUntilExit()
        }
        try super.tearDownWithError()
    }

    private func options(minimumFree: UInt64) -> ShardEngineOptions {
        var options = ShardEngineOptions()
        options.syncWrites = true
        options.writeBufferSize = 256 << 10
        options.compression = .none
        options.minimumFreeDiskBytes = minimumFree
        // RocksDB preallocates 4 MiB for the MANIFEST by default: half of this small disk.
        // No compactions: one finishing deletes its inputs, and free space would rise
        // above the reserve again at a moment the test cannot choose (flushes only
        // ever take space, so once writes are refused they stay refused).
        options.rocksDBOptions = "manifest_preallocation_size=65536;disable_auto_compactions=true"
        return options
    }

    /// The free-space reserve stops writes with `.diskFull` before RocksDB meets a full
    /// disk; the engine keeps refusing (no abort) and accepts writes again once space
    /// is freed; a reopen holds every acknowledged write.
    func testWritesFailWithDiskFullBeforeRocksDBRunsOutAndResumeAfterFreeingSpace() throws {
        let root = try XCTUnwrap(mountPoint)
        let filler = root + "/filler"
        try Data(repeating: 0xAB, count: 2 << 20).write(to: URL(fileURLWithPath: filler))
        let options = options(minimumFree: 2 << 20)
        let engine = try ShardEngine.create(at: root + "/instance", shards: 2, options: options)
        // One write that would itself take free space under the reserve is refused whole.
        XCTAssertEqual(code { try engine.put(Array("huge".utf8), [UInt8](repeating: 1, count: 5 << 20)) }, .diskFull)
        XCTAssertNil(try engine.get("huge"))
        var acknowledged: [String: [UInt8]] = [:]
        var failure: ShardDBError?
        for i in 0..<10_000 {
            let key = "key-\(i)", value = [UInt8](repeating: UInt8(i % 251), count: 8 << 10)
            do {
                try engine.put(Array(key.utf8), value)
                acknowledged[key] = value
            } catch let error as ShardDBError {
                failure = error
                break
            }
        }
        let error = try XCTUnwrap(failure, "8 MiB never filled up")
        XCTAssertEqual(error.code, .diskFull, "\(error)")
        XCTAssertTrue(error.message.contains("minimumFreeDiskBytes"), "\(error)")
        XCTAssertGreaterThan(acknowledged.count, 10)
        // Keep free space under the reserve whatever RocksDB still does in the
        // background (a flush the last write triggered may still be running):
        // another file leaves half the reserve free.
        let squeeze = root + "/squeeze"
        let free = try XCTUnwrap(freeBytes(root))
        if free > 1 << 20 {
            try Data(count: Int(free - (1 << 20))).write(to: URL(fileURLWithPath: squeeze))
        }
        // Writing on: still a typed refusal, for every kind of write, never an abort.
        for _ in 0..<3 {
            XCTAssertEqual(code { try engine.put("more", "x") }, .diskFull)
            XCTAssertEqual(code { try engine.delete("key-1") }, .diskFull)
            XCTAssertEqual(code { try engine.write { try $0.put("batch", "x") } }, .diskFull)
        }
        XCTAssertEqual(try engine.get("key-1"), acknowledged["key-1"], "reads go on")

        try FileManager.default.removeItem(atPath: filler)
        try? FileManager.default.removeItem(atPath: squeeze)
        try engine.put("after-freeing", "space")
        acknowledged["after-freeing"] = Array("space".utf8)
        engine.close()
        let reopened = try ShardEngine.open(at: root + "/instance", options: options)
        defer { reopened.close() }
        var missing = 0
        for (key, value) in acknowledged where try reopened.get(key) != value { missing += 1 }
        XCTAssertEqual(missing, 0, "\(missing) of \(acknowledged.count) acknowledged writes lost")
    }

    /// A full disk: commands that open the instance (reads too) refuse with one
    /// line instead of aborting in RocksDB's first write of the open; after space is
    /// freed the instance is as it was.
    func testOpeningOnAFullDiskIsRefusedNotAborted() throws {
        let root = try XCTUnwrap(mountPoint)
        let instance = root + "/instance"
        let engine = try ShardEngine.create(at: instance, shards: 2, options: options(minimumFree: 1 << 20))
        try engine.put("key", "value")
        engine.close()
        let filler = root + "/filler"
        FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        let block = Data(count: 64 << 10)
        while (try? handle.write(contentsOf: block)) != nil, (freeBytes(root) ?? 0) > 0 {}
        try handle.close()
        for arguments in [["get", instance, "key"], ["info", instance], ["put", instance, "k", "v"]] {
            let result = try ShardctlProcess.run(arguments)
            assertError(result, mentioning: "is not opened", "\(arguments[0]) on a full disk")
        }
        try FileManager.default.removeItem(atPath: filler)
        XCTAssertEqual(try shardctl(["get", instance, "key", "--min-free-disk-bytes", "1048576"]).stdout, "value\n")
    }

    /// Without the reserve, RocksDB itself meets ENOSPC. Run in a child process
    /// (`shardctl import`, one entry per atomic batch): Debian's assertion-enabled
    /// librocksdb may abort it (docs/CRASH_TESTING.md, "Disk full"); whichever way it
    /// ends — typed error or abort — after freeing space the reopened instance holds
    /// every acknowledged entry and exactly a prefix of the input, with right values.
    func testWithoutTheReserveRocksDBsOwnFailureLosesNothingAcknowledged() throws {
        let root = try XCTUnwrap(mountPoint)
        let filler = root + "/filler"
        try Data(repeating: 0xAB, count: 2 << 20).write(to: URL(fileURLWithPath: filler))
        let instance = root + "/instance"
        try shardctl(["init", instance, "--shards", "2"])
        let value = { (i: Int) in "\(i)-" + String(repeating: "v", count: 8 << 10) }
        let input = (0..<2000).map { "key-\(String(format: "%05d", $0))\t\(value($0))" }.joined(separator: "\n") + "\n"
        let result = try ShardctlProcess.run(["import", instance, "--batch-size", "1", "--min-free-disk-bytes", "0"],
                                             stdin: Data(input.utf8))
        XCTAssertNotEqual(result.status, 0, "8 MiB never filled up: \(result.stdout)")
        var acknowledged = 0
        if result.signal == nil {
            // A typed error: one line, the storage error, and how many entries were stored before.
            XCTAssertEqual(result.status, 2, result.stderr)
            XCTAssertEqual(result.stderrLines.count, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("No space left"), result.stderr)
            let count = result.stderr.components(separatedBy: "(imported ").last?.split(separator: " ").first.flatMap { Int($0) }
            acknowledged = try XCTUnwrap(count, result.stderr)
        } else {
            print("DiskFullTests: RocksDB aborted the writer (signal \(result.status)) on ENOSPC; checking the prefix only")
        }

        try FileManager.default.removeItem(atPath: filler)
        let reopened = try ShardEngine.open(at: instance, options: options(minimumFree: 0))
        defer { reopened.close() }
        var present = 0
        while present < 2000, try reopened.getString("key-\(String(format: "%05d", present))") == value(present) { present += 1 }
        XCTAssertGreaterThanOrEqual(present, acknowledged, "acknowledged entries lost")
        XCTAssertGreaterThan(present, 10)
        for i in present..<2000 {
            XCTAssertNil(try reopened.get("key-\(String(format: "%05d", i))"), "key \(i) after a hole at \(present)")
        }
        try reopened.put("after-freeing", "space")
        XCTAssertEqual(try reopened.getString("after-freeing"), "space")
    }

    private func freeBytes(_ path: String) -> UInt64? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }

    private func code(_ body: () throws -> Void) -> ShardDBError.Code? {
        do { try body(); return nil } catch { return (error as? ShardDBError)?.code }
    }
}
