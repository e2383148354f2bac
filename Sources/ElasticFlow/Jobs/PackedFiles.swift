import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The single-node count's small files (regular files of at most half a parcel at the check),
/// packed into groups of about a parcel by the sizes the check saw, each group taken by one thread
/// with one atomic increment and read outside any lock: the threads read small files at the same
/// time, where the `ParcelCutter` reads every source in order under its lock (for 5,000 files of
/// 1.6 KB that serial reading, not the counting, was the longer half of the job).
///
/// A file is read to its end whatever its size now (one that grew is read whole, in parcels cut
/// at whitespace like the cutter's), through the thread's own `SourceReader`, so a compressed
/// small file is recognised by its first bytes and counted as its text, and a decompression bomb
/// is cut into parcels rather than held; a small seekable zstd file is read by its frames, its
/// seek table checked as `SeekableParcels` checks it (the check does not read small files' first
/// bytes: a `pread` each, 7 % of counting 5,000 small files). A `\n` goes between two files, so a file boundary is a
/// word boundary: the counts are those of counting each file alone. The large files stay with the
/// cutter, and seekable zstd files with `SeekableParcels`.
final class PackedFiles: Sendable {
    private let names: [String]
    /// The check's descriptor for each file, or -1: opened by the thread that reads it. Each is
    /// closed by the thread that takes its group, or by `deinit` for a group never taken.
    private let descriptors: [Int32]
    /// Runs of `names`, each holding at most a parcel by the sizes at the check (or one file).
    let groups: [Range<Int>]
    private let decompression: Decompression
    private let next = Atomic<Int>(0)
    private let bytes = Atomic<UInt64>(0)
    private let done = Atomic<Int>(0)
    private let error = Mutex<ElasticFlowError?>(nil)

    /// Takes the small regular files out of `checked` (their descriptors with them); the rest stay
    /// in order for the cutter.
    static func split(_ checked: CheckedSources, parcelSize: Int, decompression: Decompression)
        -> (packed: PackedFiles, rest: CheckedSources)
    {
        var names: [String] = []
        var descriptors: [Int32] = []
        var groups: [Range<Int>] = []
        var rest: [Int] = []
        var groupStart = 0
        var groupBytes = 0
        for index in 0..<checked.count {
            let entry = checked.entry(index)
            guard entry.isRegular, entry.size <= UInt64(parcelSize / 2), case .file(let path) = checked.sources[index]
            else {
                rest.append(index)
                continue
            }
            let size = Int(entry.size) + 1  // and the newline that may follow it
            if names.count > groupStart && groupBytes + size > parcelSize {
                groups.append(groupStart..<names.count)
                groupStart = names.count
                groupBytes = 0
            }
            groupBytes += size
            names.append(path)
            descriptors.append(checked.takeDescriptor(index) ?? -1)
        }
        if names.count > groupStart { groups.append(groupStart..<names.count) }
        return (
            PackedFiles(names: names, descriptors: descriptors, groups: groups, decompression), checked.subset(rest)
        )
    }

    private init(names: [String], descriptors: [Int32], groups: [Range<Int>], _ decompression: Decompression) {
        self.names = names
        self.descriptors = descriptors
        self.groups = groups
        self.decompression = decompression
    }

    deinit {
        let taken = min(next.load(ordering: .relaxed), groups.count)
        for group in groups[taken...] {
            for fd in descriptors[group] where fd >= 0 { close(fd) }
        }
    }

    /// Bytes counted (text, for a compressed file) and groups done so far.
    var statistics: WordCountStatistics {
        WordCountStatistics(bytes: bytes.load(ordering: .relaxed), parcels: done.load(ordering: .relaxed))
    }

    /// The first error a thread met, if any.
    var firstError: ElasticFlowError? { error.withLock { $0 } }

    /// Counts groups into `counter` until none is left or a thread failed.
    func drain(into counter: WordCounter, parcelSize: Int) {
        guard !groups.isEmpty else { return }
        let buffer = ParcelBuffer(capacity: parcelSize)
        let reader = SourceReader(decompression: decompression)
        var frames: SeekableReader?  // made for the first seekable zstd file met
        while firstError == nil {
            let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
            guard index < groups.count else { return }
            do throws(ElasticFlowError) {
                if try count(groups[index], into: counter, buffer: buffer, reader: reader, frames: &frames) > 0 {
                    done.add(1, ordering: .relaxed)  // a parcel, as the cutter counts them: one with bytes
                }
            } catch {
                fail(error)
            }
            buffer.releaseOversized()
        }
    }

    /// Where the bytes in the buffer begin: a file of the group and the offset in it.
    private struct Start {
        var file: Int
        var offset: UInt64
    }

    /// Counts the files of `group`. - Returns: the bytes counted.
    private func count(
        _ group: Range<Int>, into counter: WordCounter, buffer: ParcelBuffer, reader: SourceReader,
        frames: inout SeekableReader?
    ) throws(ElasticFlowError) -> UInt64 {
        var counted: UInt64 = 0
        var position = group.lowerBound
        defer {  // a group stopped by an error closes the descriptors it did not reach
            for fd in descriptors[position..<group.upperBound] where fd >= 0 { close(fd) }
        }
        buffer.count = 0
        var start = Start(file: group.lowerBound, offset: 0)
        while position < group.upperBound {
            let file = position
            position += 1
            let fd = descriptors[file] >= 0 ? descriptors[file] : try DataSource.file(names[file]).open()
            defer {
                close(fd)
                reader.end()
            }
            try reader.begin(fd, name: names[file])
            if reader.format == InputDecoder.zstd, let table = try Self.seekTable(fd, name: names[file]) {
                // A seekable file: its table is checked and its frames read as SeekableParcels
                // reads them (a frame too large refused, one that lies caught), after the bytes
                // of the files before it are counted.
                if buffer.count > 0 { counted += try feed(buffer, through: file - 1, from: &start, into: counter) }
                counted += try countFrames(of: table, fd, name: names[file], into: counter, buffer, &frames)
                continue
            }
            if buffer.count > 0 && buffer.base.load(fromByteOffset: buffer.count - 1, as: UInt8.self) != 0x0A {
                if buffer.count == buffer.capacity {  // counted whole: empty now, it needs no newline
                    counted += try feed(buffer, through: file - 1, from: &start, into: counter)
                } else {
                    buffer.base.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: buffer.count, as: UInt8.self)
                    buffer.count += 1
                }
            }
            if buffer.count == 0 { start = Start(file: file, offset: 0) }
            var read: UInt64 = 0  // bytes of this file read so far
            while true {
                if buffer.count == buffer.capacity {
                    counted += try feed(buffer, through: file, from: &start, into: counter, fileStart: (file, read))
                }
                let n = try reader.read(into: buffer.base + buffer.count, count: buffer.capacity - buffer.count)
                if n == 0 { break }
                buffer.count += n
                read += UInt64(n)
            }
        }
        if buffer.count > 0 {
            counted += try feed(buffer, through: group.upperBound - 1, from: &start, into: counter)
            buffer.count = 0
        }
        return counted
    }

    /// Counts the buffer: all of it at the end of the group (`fileStart` nil), else — the buffer
    /// full in the middle of a file — up to its last whitespace, keeping the rest (part of a word)
    /// at the front for the next read. A full buffer with no whitespace is one word of the current
    /// file: it grows (doubling) up to the word-size cap, then the word is an error naming the file.
    /// - Returns: the bytes counted.
    private func feed(
        _ buffer: ParcelBuffer, through last: Int, from start: inout Start, into counter: WordCounter,
        fileStart: (file: Int, read: UInt64)? = nil
    ) throws(ElasticFlowError) -> UInt64 {
        var length = buffer.count
        if let fileStart {
            guard let cut = ParcelCutter.cutPoint(buffer.base.assumingMemoryBound(to: UInt8.self), buffer.count)
            else {  // all of it is one word of the current file (a newline would have been a cut)
                guard buffer.count <= counter.maxWordSize else {
                    throw .wordTooLong(
                        source: names[fileStart.file], offset: fileStart.read - UInt64(buffer.count),
                        cap: counter.maxWordSize)
                }
                buffer.grow(to: min(buffer.capacity * 2, max(buffer.capacity, counter.maxWordSize + 1)))
                return 0
            }
            length = cut
        }
        do {
            try counter.feed(UnsafeRawBufferPointer(start: buffer.base, count: length))
            try counter.finish()
        } catch .core(.wordTooLong, _) {
            throw .wordTooLong(
                source: names[start.file], through: last > start.file ? names[last] : nil, offset: start.offset,
                cap: counter.maxWordSize)
        }
        bytes.add(UInt64(length), ordering: .relaxed)
        let tail = buffer.count - length
        if tail > 0 { buffer.base.copyMemory(from: buffer.base + length, byteCount: tail) }
        buffer.count = tail
        if let fileStart { start = Start(file: fileStart.file, offset: fileStart.read - UInt64(tail)) }
        return UInt64(length)
    }

    /// The seek table of the zstd file open as `fd`, or nil when it has none (a plain zstd stream).
    private static func seekTable(_ fd: Int32, name: String) throws(ElasticFlowError) -> SeekTable? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(path: name, operation: "stat", errno: errno) }
        return try SeekTable.load(fd: fd, size: UInt64(info.st_size), name: name)
    }

    /// Counts a seekable file's text a run of frames (about a parcel) at a time, each run's owned
    /// bytes (`SeekableReader`'s boundary rule), into an empty buffer.
    private func countFrames(
        of table: SeekTable, _ fd: Int32, name: String, into counter: WordCounter, _ buffer: ParcelBuffer,
        _ frames: inout SeekableReader?
    ) throws(ElasticFlowError) -> UInt64 {
        let reader: SeekableReader
        if let frames {
            reader = frames
        } else {
            reader = try SeekableReader()
            frames = reader
        }
        var counted: UInt64 = 0
        for run in table.runs(targetSize: buffer.normalCapacity) {
            var start: UInt64 = 0
            do {
                let (owned, text) = try reader.read(
                    run, of: table, fd: fd, name: name, boundary: .whitespace, lookPastCap: counter.maxWordSize,
                    into: buffer)
                start = text
                try counter.feed(UnsafeRawBufferPointer(rebasing: buffer.bytes[owned]))
                try counter.finish()
                counted += UInt64(owned.count)
            } catch .core(.wordTooLong, _) {
                throw .wordTooLong(source: name, offset: start, cap: counter.maxWordSize)
            }
        }
        bytes.add(counted, ordering: .relaxed)
        buffer.count = 0
        return counted
    }

    private func fail(_ failure: ElasticFlowError) { error.withLock { if $0 == nil { $0 = failure } } }
}
