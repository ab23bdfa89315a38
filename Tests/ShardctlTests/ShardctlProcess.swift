import Foundation
import XCTest

/// Runs the `shardctl` built next to the test bundle as a child process:
/// arguments, optional stdin bytes and environment in; stdout, stderr and
/// how it ended out.
///
/// ```swift
/// let result = try ShardctlProcess.run(["import", dir, "--format", "jsonl"], stdin: Data(lines.utf8))
/// XCTAssertEqual(result.status, 0, result.stderr)
/// ```
///
/// After `swift build --build-tests` the test bundle and `shardctl` sit in the
/// same build directory, the one of `CommandLine.arguments[0]`.
enum ShardctlProcess {
    struct Result {
        /// The exit status, or the signal number when ``signal`` is set.
        var status: Int32
        /// The signal that ended the process, if one did.
        var signal: Int32?
        var stdoutData: Data
        var stderrData: Data

        var stdout: String { String(decoding: stdoutData, as: UTF8.self) }
        var stderr: String { String(decoding: stderrData, as: UTF8.self) }
        /// Non-empty stderr lines.
        var stderrLines: [Substring] { stderr.split(separator: "\n") }
        /// Non-empty stdout lines.
        var stdoutLines: [Substring] { stdout.split(separator: "\n") }
    }

    /// A child still running, for tests that need it alive (holding an instance's lock).
    final class Running {
        let process: Process
        /// The child's stdin; ``finish()`` closes it.
        let stdin: FileHandle
        private let stdout: PipeReader
        private let stderr: PipeReader

        fileprivate init(process: Process, stdin: FileHandle, stdout: PipeReader, stderr: PipeReader) {
            self.process = process
            self.stdin = stdin
            self.stdout = stdout
            self.stderr = stderr
        }

        /// Closes stdin, waits for the exit and returns what the child printed.
        func finish() -> Result {
            try? stdin.close()
            process.waitUntilExit()
            let signalled = process.terminationReason == .uncaughtSignal
            return Result(status: process.terminationStatus, signal: signalled ? process.terminationStatus : nil,
                          stdoutData: stdout.wait(), stderrData: stderr.wait())
        }
    }

    static var executable: URL {
        get throws {
            let candidates = [
                URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                Bundle.main.bundleURL.deletingLastPathComponent(),
                Bundle.main.bundleURL,
            ].map { $0.appendingPathComponent("shardctl") }
            guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
                throw XCTSkip("shardctl is not built next to the tests (\(candidates.map(\.path))); run swift build --build-tests")
            }
            return found
        }
    }

    /// Runs `shardctl arguments...` to its end. `environment` adds to (or, with an
    /// empty value, removes from) this process's environment; `SHARDDB_FAILPOINTS`
    /// is never inherited. A child still running after `timeout` seconds is killed
    /// (SIGKILL, which the result shows): a hang fails the test instead of the run.
    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    timeout: TimeInterval = 600, currentDirectory: String? = nil) throws -> Result {
        let running = try start(arguments, environment: environment, currentDirectory: currentDirectory)
        let process = running.process
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        if let stdin, !stdin.isEmpty {
            // The child may exit before reading everything (a malformed import line); EPIPE is fine then.
            try? running.stdin.write(contentsOf: stdin)
        }
        return running.finish()
    }

    /// Starts `shardctl arguments...` with its stdin a pipe left open until ``Running/finish()``.
    static func start(_ arguments: [String], environment: [String: String] = [:], currentDirectory: String? = nil) throws -> Running {
        ignoreSIGPIPE
        let process = Process()
        process.executableURL = try executable
        process.arguments = arguments
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        var env = ProcessInfo.processInfo.environment
        env["SHARDDB_FAILPOINTS"] = nil
        for (key, value) in environment { env[key] = value.isEmpty ? nil : value }
        process.environment = env
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Drain both pipes on their own threads, so a full pipe never blocks the child.
        return Running(process: process, stdin: input.fileHandleForWriting,
                       stdout: PipeReader(output.fileHandleForReading), stderr: PipeReader(errors.fileHandleForReading))
    }

    /// Writing to a child that already exited must fail with EPIPE, not kill the test process.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()
}

/// Reads a pipe to its end on a background thread.
private final class PipeReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func wait() -> Data {
        done.wait()
        done.signal()  // later waits return at once
        return data
    }
}
