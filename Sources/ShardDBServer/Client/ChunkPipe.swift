/// A bounded hand-off between a stream reader and its consumer: the reader
/// waits while `capacity` chunks are unconsumed, so a bulk stream prefetches a
/// little (overlapping the source's reads with the target's writes) without
/// ever buffering a shard in memory.
actor ChunkPipe<Element: Sendable> {
    private let capacity: Int
    private var buffer: [Element] = []
    private var ending: Result<Void, Error>?
    private var consumer: CheckedContinuation<Void, Never>?
    private var producers: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Adds a chunk, waiting for room. - throws: `CancellationError` once the consumer closed the pipe.
    func send(_ element: Element) async throws {
        while buffer.count >= capacity && !closed {
            await withCheckedContinuation { producers.append($0) }
        }
        if closed { throw CancellationError() }
        buffer.append(element)
        consumer?.resume()
        consumer = nil
    }

    /// Ends the stream: normally (nil) or with the reader's error.
    func finish(_ error: Error?) {
        ending = error.map { .failure($0) } ?? .success(())
        consumer?.resume()
        consumer = nil
    }

    /// The next chunk; nil at the end. - throws: the reader's error, or
    /// `CancellationError` once the pipe is closed.
    func next() async throws -> Element? {
        while buffer.isEmpty && ending == nil && !closed {
            await withCheckedContinuation { consumer = $0 }
        }
        if closed { throw CancellationError() }
        if !buffer.isEmpty {
            let element = buffer.removeFirst()
            if !producers.isEmpty { producers.removeFirst().resume() }
            return element
        }
        try ending!.get()
        return nil
    }

    /// The consumer is gone: release the reader, and drop what it prefetched
    /// (a closed stream never hands out another chunk).
    func close() {
        closed = true
        buffer = []
        consumer?.resume()
        consumer = nil
        producers.forEach { $0.resume() }
        producers = []
    }
}
