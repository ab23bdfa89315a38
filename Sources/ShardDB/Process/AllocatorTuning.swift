#if canImport(Glibc)
import Glibc
#endif

/// glibc malloc settings for a process that moves bulk data (migrations,
/// checkpoints, `shardctl serve`).
///
/// A bulk copy allocates buffers of a few MiB again and again, several alive at
/// once: chunk buffers, the transport's message buffers. With glibc's defaults
/// the heap hands back to the kernel whatever is free at its top beyond a few
/// MiB (the trim threshold: twice the mmap threshold, which glibc raises to
/// the largest mapped buffer freed, up to 32 MiB), and
/// buffers above the mmap threshold are mapped and unmapped one by one, so the
/// next chunk's buffers are fresh pages, faulted in and zeroed again: a third
/// of a migration target's CPU time on the machine BENCHMARKS.md describes,
/// and 81,000 page faults against a few thousand in `AllocatorTuningTests`.
/// ``tuneForBulkCopies(retainingFreedBytes:)`` serves allocations up to 32 MiB
/// from the heap and keeps up to `retainingFreedBytes` (at least 32 MiB) of
/// freed memory at the top of each of glibc's heaps, so the next chunk reuses
/// the last one's pages. The limit is per heap: the main one, and the arenas
/// glibc gives threads (each at most 64 MiB), so a process can keep more in all.
///
/// It changes the whole process's allocator, so ShardDB never calls it on its
/// own: `shardctl` does at startup, and an application calls it once if it
/// wants the same (or sets `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456`).
public enum AllocatorTuning {
    /// The largest allocation served from the heap: glibc's maximum for the mmap threshold on 64-bit.
    public static let heapAllocationLimit = 32 << 20
    /// Freed memory kept by default.
    public static let defaultRetainedBytes = 256 << 20

    /// Applies the settings; a `retainingFreedBytes` under 32 MiB counts as 32 MiB.
    /// Returns false where they do not apply (not glibc) or glibc refused them.
    @discardableResult
    public static func tuneForBulkCopies(retainingFreedBytes retained: Int = defaultRetainedBytes) -> Bool {
        #if canImport(Glibc)
        // mallopt is not in the Glibc module map (malloc.h is not imported); it is in libc.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1  // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
        let retain = Int32(clamping: max(retained, heapAllocationLimit))
        return mallopt(mmapThreshold, Int32(heapAllocationLimit)) == 1 && mallopt(trimThreshold, retain) == 1
        #else
        return false
        #endif
    }
}
