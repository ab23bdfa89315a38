import Foundation
import TestSupport
import XCTest

/// Power-failure cycles of `shardctl stress` against its oracle: like the kill -9
/// cycles (CrashTests), but after each SIGKILL every file of the work directory
/// also loses what was written to it after its last fsync or fdatasync, as the
/// page cache would with the machine (docs/CRASH_TESTING.md, "Power loss"). An
/// LD_PRELOAD library (Tests/TestSupport/PowerLoss/powerloss.c) records the syncs. With `--sync`
/// no acknowledged operation may be lost, every key group owned once, every
/// listed checkpoint restorable. POWERLOSS_CYCLES sets the number of cycles
/// (default 12); POWERLOSS_KEEP a folder for the evidence of the last cycle.
final class PowerLossTests: ShardctlTestCase {
    func testPowerLossCyclesAgainstTheOracle() throws {
        let cycles = Int(ProcessInfo.processInfo.environment["POWERLOSS_CYCLES"] ?? "") ?? 12
        let seed = UInt64(ProcessInfo.processInfo.environment["CRASH_SEED"] ?? "") ?? UInt64.random(in: 1...1_000_000)
        var random = SeededRandom(seed: seed)
        let library = try PowerLoss.buildLibrary(in: path("powerloss.so"))
        // --sync only: without it each instance loses its own unsynced tail, and one
        // can keep later operations than the other (a checkpoint syncs `a`, say),
        // which no single prefix of the oracle's history explains.
        let workdir = path("sync"), mode = ["--sync"]
        try shardctl(["stress", workdir, "--seed", "\(seed)", "--ops", "200"] + mode)
        var failures: [String] = []
        var dropped = PowerLoss.Loss()
        let started = Date()
        for cycle in 0..<cycles {
            let log = path("powerloss.log")
            try? FileManager.default.removeItem(atPath: log)
            let before = try PowerLoss.sizes(below: workdir)
            // Power lost at a random moment, or (two cycles in three) at a named step of a
            // migration or a checkpoint.
            let (run, point) = try CrashTests.killedStressRun(
                workdir, mode, atAPoint: cycle % 3 != 0,
                environment: ["LD_PRELOAD": library, "POWERLOSS_LOG": log, "POWERLOSS_ROOT": workdir], random: &random)
            if run.signal == nil && run.status != 0 {
                failures.append("cycle \(cycle) (\(workdir)): stress exited \(run.status): \(run.stderr)")
                break
            }
            let keep = ProcessInfo.processInfo.environment["POWERLOSS_KEEP"]  // evidence, for a look by hand
            if let keep {
                try? FileManager.default.removeItem(atPath: keep)
                try FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: workdir, toPath: keep + "/killed")
            }
            let loss = try PowerLoss.apply(log: log, filesBefore: before, below: workdir)
            if let keep {
                try FileManager.default.copyItem(atPath: workdir, toPath: keep + "/cut")
                try FileManager.default.copyItem(atPath: log, toPath: keep + "/powerloss.log")
            }
            dropped.files += loss.files
            dropped.bytes += loss.bytes
            let verify = try ShardctlProcess.run(["stress", workdir, "--verify-only"])
            let numbers = CrashTests.numbers(in: verify.stdout, after: ["through operation ", "("])
            if verify.status != 0 || verify.signal != nil {
                failures.append("cycle \(cycle) (\(workdir), point \(point ?? "random"), \(loss.files) files cut): verify failed: \(verify.stderr)")
                break
            }
            guard let lost = numbers[1] else {
                failures.append("cycle \(cycle): verify printed no '(L acknowledged lost)': \(verify.stdout)")
                break
            }
            if lost > 0 {
                failures.append("cycle \(cycle) (\(workdir), point \(point ?? "random")): \(lost) acknowledged operations lost with --sync: \(verify.stdout)")
                break
            }
        }
        let summary = "power-loss test: \(cycles) cycles in \(Int(Date().timeIntervalSince(started))) s, seed \(seed): "
            + "\(dropped.files) files cut by \(dropped.bytes) unsynced bytes, \(failures.count) failures"
        print(summary)
        XCTAssertEqual(failures, [], summary)
        // The simulation must have taken something away, or this is only a kill -9 test.
        if failures.isEmpty && cycles >= 4 { XCTAssertGreaterThan(dropped.bytes, 0, summary) }
    }

    /// The library's record, applied by hand: a file written and never synced is
    /// cut to nothing, a synced one back to its synced size; renames carry sizes.
    func testThePowerLossLibraryKeepsOnlySyncedBytes() throws {
        let library = try PowerLoss.buildLibrary(in: path("powerloss.so"))
        let dir = path("files")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/existing"))
        let before = try PowerLoss.sizes(below: dir)
        let log = path("powerloss.log")
        // Each command runs under the library: redirections open, `sync FILE` fsyncs,
        // mv renames, ln links, rm unlinks.
        let script = """
            cd '\(dir)'
            printf 12345 > synced && sync synced && printf 678 >> synced
            printf abc > unsynced
            printf xy > moved.tmp && sync moved.tmp && mv moved.tmp moved
            printf +new >> existing
            ln moved linked && rm linked
            """
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-e", "-c", script]
        shell.environment = ["LD_PRELOAD": library, "POWERLOSS_LOG": log, "POWERLOSS_ROOT": dir,
                             "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        try shell.run()
        shell.waitUntilExit()
        XCTAssertEqual(shell.terminationStatus, 0)
        let loss = try PowerLoss.apply(log: log, filesBefore: before, below: dir)
        func contents(_ name: String) -> String? { FileManager.default.contents(atPath: dir + "/" + name).map { String(decoding: $0, as: UTF8.self) } }
        XCTAssertEqual(contents("synced"), "12345")
        XCTAssertEqual(contents("unsynced"), "")
        XCTAssertEqual(contents("moved"), "xy")
        XCTAssertEqual(contents("existing"), "old")
        XCTAssertNil(contents("linked"))
        XCTAssertEqual(loss.files, 3)
        XCTAssertEqual(loss.bytes, 3 + 3 + 4)
    }
}
