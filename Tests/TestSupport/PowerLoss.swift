// The power-loss model shared by the tests that cut files after a kill
// (docs/CRASH_TESTING.md, "Power loss"): the LD_PRELOAD library's record, applied.
import Foundation
import XCTest

/// What a power failure leaves of the files below a directory, from the record
/// of powerloss.c (its comment has the model).
public enum PowerLoss {
    public struct Loss {
        public var files = 0, bytes = 0
        public init() {}
    }

    /// The size of every regular file below `directory`.
    public static func sizes(below directory: String) throws -> [String: Int] {
        var sizes: [String: Int] = [:]
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return sizes }
        while let relative = walker.nextObject() as? String {
            let file = directory + "/" + relative
            var info = stat()
            if lstat(file, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG { sizes[file] = Int(info.st_size) }
        }
        return sizes
    }

    /// Cuts every file below `directory` to what survives: its size in `filesBefore`
    /// (what existed when the run began was durable), then as the log's events
    /// change it; 0 for a file the log does not know. Returns what was cut.
    public static func apply(log: String, filesBefore: [String: Int], below directory: String) throws -> Loss {
        var durable = filesBefore
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        // A line cut by the kill (no newline) is not an event.
        for line in text.split(separator: "\n", omittingEmptySubsequences: true).dropLast(text.hasSuffix("\n") ? 0 : 1) {
            let kind = line.first
            let rest = line.dropFirst(2)
            switch kind {
            case "S":
                guard let space = rest.firstIndex(of: " "), let size = Int(rest[..<space]) else { continue }
                durable[String(rest[rest.index(after: space)...])] = size
            case "T":
                durable[String(rest)] = 0
            case "U":
                durable[String(rest)] = nil
            case "R", "L":
                let parts = rest.split(separator: "\t", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                let (from, to) = (parts[0], parts[1])
                // A directory renamed carries the files below it; a name the record
                // does not know replaces its target with nothing durable.
                durable[to] = nil
                for (file, size) in durable where file == from || file.hasPrefix(from + "/") {
                    let moved = to + file.dropFirst(from.count)
                    durable[moved] = size
                    if kind == "R" { durable[file] = nil }
                }
            default:
                continue
            }
        }
        var loss = Loss()
        for (file, size) in try sizes(below: directory) {
            let kept = min(durable[file] ?? 0, size)
            guard kept < size else { continue }
            guard truncate(file, off_t(kept)) == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file]) }
            loss.files += 1
            loss.bytes += size - kept
        }
        return loss
    }

    /// Compiles powerloss.c with the C compiler beside `swift` (or `cc`).
    public static func buildLibrary(in output: String) throws -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("PowerLoss/powerloss.c").path
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        let beside = paths.map { $0 + "/swift" }.first { FileManager.default.isExecutableFile(atPath: $0) }
            .map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("clang").path }
        let compiler = [beside, "/usr/bin/cc", "/usr/bin/clang", "/usr/bin/gcc"].compactMap { $0 }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let compiler else { throw XCTSkip("no C compiler to build the power-loss library") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: compiler)
        process.arguments = ["-shared", "-fPIC", "-O1", "-o", output, source, "-ldl"]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            XCTFail("\(compiler) failed: \(String(decoding: message, as: UTF8.self))")
            throw CocoaError(.executableLoad)
        }
        return output
    }
}
