import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Small files that must be either wholly old or wholly new after a crash.
enum DurableFile {
    /// Writes `bytes` to `path` through a temporary sibling: write, fsync, rename,
    /// fsync the directory.
    ///
    /// - throws: ``ShardDBError`` `.notWritable`.
    static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ShardDBError(.notWritable, "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var ok = bytes.withUnsafeBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        ok = ok && fsync(fd) == 0
        let reason = String(cString: strerror(errno))
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ShardDBError(.notWritable, "cannot write \(path): \(reason)")
        }
        syncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// Copies the file at `source` to `destination` (which must not exist) with
    /// sendfile, the kernel copying page to page, and fsyncs the copy.
    ///
    /// - throws: ``ShardDBError`` `.notWritable` (the partial copy is removed).
    static func copy(from source: String, to destination: String) throws {
        func failure(_ what: String) -> ShardDBError {
            ShardDBError(.notWritable, "cannot copy \(source) to \(destination): \(what): \(String(cString: strerror(errno)))")
        }
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw failure("open") }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0 else { throw failure("stat") }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw failure("create") }
        var done = false
        defer {
            close(output)
            if !done { unlink(destination) }
        }
        var remaining = Int(info.st_size)
        while remaining > 0 {
            let n = sendfile(output, input, nil, min(remaining, 1 << 30))
            guard n > 0 else { throw failure("sendfile") }
            remaining -= n
        }
        guard fsync(output) == 0 else { throw failure("fsync") }
        done = true
    }

    /// Writes `data` at `offset` of the file at `path` (created if missing), and
    /// returns once the bytes are on disk (fdatasync; a file it created has its
    /// name synced too). `offset` must not be past the file's end. What follows
    /// the written bytes stays: the pieces written are of one file that does not
    /// change (a table file of the source), so a piece written again, e.g. by a
    /// call that outlived its deadline and finished after a newer one, has the
    /// same bytes and must not cut off the pieces written after it.
    ///
    /// Syncing each piece is what lets a transport acknowledge it: a resume after a
    /// crash of the machine starts after the pieces acknowledged, which must be
    /// there. It is also faster than leaving it all to one sync at the end: the
    /// disk writes a piece while the next one is on its way, instead of holding up
    /// the import (docs/TRANSPORT.md, "Table files").
    ///
    /// With `sync` false the bytes are written, and their writeback started, but
    /// not waited for, nor the name of a file created: ``sync(_:dataOnly:)`` and
    /// ``syncDirectory(_:)`` then make them durable (a transport syncs a span of
    /// pieces while it writes the next ones).
    ///
    /// - throws: ``ShardDBError`` `.notWritable`, `.invalidArgument` for an offset past the end.
    static func write(_ data: Data, to path: String, at offset: UInt64, sync: Bool = true) throws {
        var fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        let created = fd >= 0
        if !created && errno == EEXIST { fd = open(path, O_WRONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw ShardDBError(.notWritable, "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ShardDBError(.notWritable, "cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard offset <= UInt64(info.st_size) else {
            if created { unlink(path) }
            throw ShardDBError(.invalidArgument, "write at \(offset) of \(path), which has \(info.st_size) bytes")
        }
        try data.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
                guard n > 0 else { throw ShardDBError(.notWritable, "cannot write \(path): \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        if sync {
            guard fdatasync(fd) == 0 else { throw ShardDBError(.notWritable, "cannot sync \(path): \(String(cString: strerror(errno)))") }
            if created { syncDirectory((path as NSString).deletingLastPathComponent) }
        } else {
            // Start writing the piece back now, without waiting for it: the sync
            // that follows finds it written, and the disk works during the copy.
            _ = sharddb_start_writeback(fd, Int64(offset), Int64(data.count))
        }
    }

    /// Creates the directory at `path` unless it exists, then syncs its parent so
    /// the new name survives a crash of the machine. The parent must exist.
    ///
    /// - throws: ``ShardDBError`` `.notWritable`.
    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) == 0 {
            syncDirectory((path as NSString).deletingLastPathComponent)
        } else if errno != EEXIST {
            throw ShardDBError(.notWritable, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// fsyncs a file; with `dataOnly`, fdatasyncs it (its bytes and size, not
    /// its other metadata).
    ///
    /// - throws: ``ShardDBError`` `.notWritable`.
    static func sync(_ path: String, dataOnly: Bool = false) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, (dataOnly ? fdatasync(fd) : fsync(fd)) == 0 else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw ShardDBError(.notWritable, "cannot sync \(path): \(reason)")
        }
        close(fd)
    }

    /// fsyncs a directory so renames and creations in it survive a power failure.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
