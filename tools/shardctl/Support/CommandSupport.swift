import ArgumentParser
import Foundation
import Logging
import ShardDB

/// Options every command that opens an instance shares.
struct InstanceOptions: ParsableArguments {
    @Argument(help: "The instance's data directory.")
    var directory: String

    @Flag(name: .long, help: "Log engine events to stderr.")
    var verbose = false

    @Option(name: .long, parsing: .unconditional, help: "Refuse writes while the instance's filesystem has less free space than this, in bytes (default 64 MiB; 0 turns the check off).")
    var minFreeDiskBytes: UInt64?

    func engineOptions() -> ShardEngineOptions {
        var options = shardctlEngineOptions(verbose: verbose)
        if let minFreeDiskBytes { options.minimumFreeDiskBytes = minFreeDiskBytes }
        return options
    }

    /// Opens the instance (its options changed by `adjust`), runs `body`, closes it.
    func withEngine<R>(adjust: (inout ShardEngineOptions) -> Void = { _ in }, _ body: (ShardEngine) throws -> R) throws -> R {
        var options = engineOptions()
        adjust(&options)
        // No migration runs in this one-shot process, so a fenced range here is one a crash left
        // in doubt: only a 'migrate' between the two instances settles it, and waiting cannot.
        options.fenceWaitSeconds = 0
        let engine = try failing { try ShardEngine.open(at: directory, options: options) }
        defer { engine.close() }
        return try failing { try body(engine) }
    }
}

/// Engine options of every command: logging is silent unless `verbose`, so an error
/// stays the one line `fail` prints (the engine warns, e.g., of migrations in doubt).
func shardctlEngineOptions(verbose: Bool = false) -> ShardEngineOptions {
    var options = ShardEngineOptions()
    // Write times for last-write-wins merges (docs/MIGRATION.md); off by default (8 bytes per value).
    options.stampWriteTime = ProcessInfo.processInfo.environment["SHARDDB_STAMP_WRITE_TIME"] == "1"
    if verbose {
        var logger = Logger(label: "sharddb")
        logger.logLevel = .debug
        options.logger = logger
    } else {
        options.logger = Logger(label: "sharddb", factory: { _ in SwiftLogNoOpLogHandler() })
    }
    return options
}

/// Turns an error into one line on stderr and exit status 2.
func failing<R>(_ body: () throws -> R) throws -> R {
    try failing(removing: nil, body)
}

/// As ``failing(_:)``, first removing `scratch` (a temporary directory the command
/// made; the process ends without running `defer`s).
func failing<R>(removing scratch: String?, _ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let exit as ExitCode {
        throw exit
    } catch let error as CleanExit {
        throw error
    } catch {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
        fail("\(error)")
    }
}

func fail(_ message: String) -> Never {
    let line = message.split(separator: "\n").first.map(String.init) ?? message
    writeStandardError(Data("shardctl: error: \(line)\n".utf8))
    exitNow(2)
}

/// Ends the process with `status` at once. `exit` runs static destructors while
/// RocksDB's background threads may still be compacting for an engine the
/// failing command left open, and can crash there (seen once in the bad-input
/// table: a SIGSEGV in a compaction thread after 'delete-range' refused its
/// arguments). What RocksDB acknowledged is in the kernel already, as after kill -9.
func exitNow(_ status: Int32) -> Never {
    fflush(nil)
    _exit(status)
}

/// Writes `value` as one line of JSON (sorted keys) to stdout.
func printJSON<T: Encodable>(_ value: T, pretty: Bool = false) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    let data = (try? encoder.encode(value)) ?? Data("null".utf8)
    writeStandardOutput(data)
    writeStandardOutput(Data("\n".utf8))
}

/// Parses a TTL given in seconds (`name`: the flag or field, for the error).
func parseTTL(_ seconds: Int64?, name: String = "--ttl") throws -> TTL {
    guard let seconds else { return .shardDefault }
    guard seconds > 0 else { throw ShardDBError(.invalidTTL, "\(name) must be a positive number of seconds, got \(seconds)") }
    guard seconds <= TTL.maxSeconds else {
        throw ShardDBError(.invalidTTL, "\(name) must be at most \(TTL.maxSeconds) seconds (10,000 years), got \(seconds)")
    }
    return .seconds(seconds)
}

/// True when stderr is a terminal (progress is drawn only then).
var stderrIsTerminal: Bool { isatty(2) != 0 }

/// A one-line progress display on stderr, redrawn at most ten times a second; silent off a TTY.
final class ProgressLine {
    private var last = Date.distantPast
    private let enabled: Bool

    init(enabled: Bool = stderrIsTerminal) { self.enabled = enabled }

    func update(_ text: @autoclosure () -> String, force: Bool = false) {
        guard enabled else { return }
        let now = Date()
        guard force || now.timeIntervalSince(last) >= 0.1 else { return }
        last = now
        writeStandardError(Data("\r\u{1B}[K\(text())".utf8))
    }

    func finish() {
        guard enabled else { return }
        writeStandardError(Data("\r\u{1B}[K".utf8))
    }
}

/// Writes to standard output (after what `print` buffered). A reader that went
/// away (`shardctl get ... | head -c 5`) ends the process quietly with status
/// 141, as SIGPIPE ends a C tool; any other failure (a full disk, `> /dev/full`)
/// is an error like any other: one line, status 2.
func writeStandardOutput(_ data: Data) {
    checkStandardOutput()
    data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                standardOutputFailed(errno)
            }
            offset += written
        }
    }
}

/// Flushes what `print` buffered; ends the process as ``writeStandardOutput(_:)`` does when that fails.
func checkStandardOutput() {
    if fflush(stdout) != 0 { standardOutputFailed(errno) }
    if ferror(stdout) != 0 {
        // An earlier write failed and errno is long gone: a pipe whose reader left
        // reports POLLERR; anything else is a failed write.
        var descriptor = pollfd(fd: 1, events: Int16(POLLOUT), revents: 0)
        standardOutputFailed(poll(&descriptor, 1, 0) == 1 && descriptor.revents & Int16(POLLERR) != 0 ? EPIPE : EIO)
    }
}

private func standardOutputFailed(_ error: Int32) -> Never {
    if error == EPIPE { exitNow(141) }
    writeStandardError(Data("shardctl: error: cannot write to standard output: \(String(cString: strerror(error)))\n".utf8))
    _exit(2)
}

/// Writes to standard error; a closed standard error is ignored.
func writeStandardError(_ data: Data) {
    try? FileHandle.standardError.write(contentsOf: data)
}
