import ArgumentParser
import Foundation
import ShardDB

/// `shardctl`: inspect and operate ShardDB instances.
@main
struct ShardCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardctl",
        abstract: "Create, inspect and operate ShardDB instances.",
        discussion: """
            A ShardDB instance is a directory holding one RocksDB database whose state is split \
            into shards (one column family per shard). Commands that open an instance need it not \
            to be open in another process.

            Exit status: 0 on success; 1 when 'get' finds no value; 2 on any error (one line on stderr); \
            64 when the command line itself is wrong (an unknown option, a missing argument: also one \
            line); 141 when the reader of its output went away (`shardctl scan DIR | head`).
            """,
        subcommands: [
            Init.self, Info.self, Put.self, Get.self, Delete.self, DeleteRange.self, Scan.self,
            Import.self, Export.self, Compact.self, Migrate.self, Rescale.self, Demo.self, Checkpoint.self,
            Bench.self, Serve.self,
            Stress.self, Verify.self, SalvageWAL.self,
        ]
    )

    /// As swift-argument-parser's own entry point, except that a usage error (an
    /// unknown option, a missing argument, a value that does not parse) is one
    /// line on stderr like every other error, still with status 64 (EX_USAGE),
    /// instead of the error followed by the usage screen.
    static func main() async {
        signal(SIGPIPE, SIG_IGN)  // a closed pipe is EPIPE from write: status 141 (writeStandardOutput)
        // Chunk buffers from the heap, reused, instead of fresh pages per chunk
        // (AllocatorTuning); SHARDCTL_MALLOC_DEFAULTS=1 keeps glibc's own settings.
        if ProcessInfo.processInfo.environment["SHARDCTL_MALLOC_DEFAULTS"] != "1" { AllocatorTuning.tuneForBulkCopies() }
        // Swift decodes the arguments as UTF-8 and replaces what does not decode
        // with U+FFFD, so two different byte strings would name the same key.
        for index in 1..<Int(CommandLine.argc) {
            guard let raw = CommandLine.unsafeArgv[index] else { continue }
            let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: strlen(raw))
            if String(validating: bytes, as: UTF8.self) == nil {
                writeStandardError(Data("shardctl: error: argument \(index) is not valid UTF-8; give binary keys and values as hex (put, get, delete --hex) or through 'import --format jsonl' (keyHex, valueHex)\n".utf8))
                exitNow(2)
            }
        }
        do {
            var command = try await asyncParseAsRoot(nil)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            checkStandardOutput()  // what `print` buffered, written and accounted for before exit 0
        } catch {
            let status = exitCode(for: error)
            // --help, and the exit codes the commands throw themselves, as the parser does.
            if status == .success || error is ExitCode || error is CleanExit { exit(withError: error) }
            // One line, but all of it: the parser's second lines say which values it takes.
            let lines = message(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let message = lines.isEmpty ? "\(error)" : lines.joined(separator: " ")
            writeStandardError(Data("shardctl: error: \(message) (see --help)\n".utf8))
            exitNow(status.rawValue)
        }
    }
}
