import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The single-node count's seekable zstd sources, as parcels of whole frames that any thread
/// decompresses on its own: a parcel is a run of frames of about the parcel size
/// (`SeekTable.runs`), taken with one atomic increment, and read outside any lock
/// (`SeekableReader`, whose boundary rule makes the counts those of the plain text whatever the
/// frame cuts). The other sources go to the `ParcelCutter`, one reader in order.
final class SeekableParcels: Sendable {
    struct Source: Sendable {
        let name: String
        let fd: Int32
        let table: SeekTable
    }

    let sources: [Source]
    /// Every parcel: a source's index in `sources` and a run of its frames.
    let parcels: [(source: Int, frames: Range<Int>)]
    private let next = Atomic<Int>(0)
    private let bytes = Atomic<UInt64>(0)
    private let done = Atomic<Int>(0)
    private let error = Mutex<ElasticFlowError?>(nil)

    /// Splits the checked sources into the seekable zstd files (those the check found to be zstd,
    /// with decompression `auto`, and that end with a seek table) and the rest, in order. A
    /// seekable file's descriptor moves from `checked` to the split (or is opened, past the
    /// check's descriptor budget); the rest keep theirs for the cutter.
    /// - Throws: `.invalidArgument` for a seekable file whose seek table is malformed or lies.
    static func split(_ checked: CheckedSources, parcelSize: Int) throws(ElasticFlowError)
        -> (seekable: SeekableParcels, rest: CheckedSources)
    {
        var found: [Source] = []
        var rest: [Int] = []
        for index in 0..<checked.count {
            let entry = checked.entry(index)
            guard entry.isRegular, entry.format == InputDecoder.zstd, case .file(let path) = checked.sources[index]
            else {
                rest.append(index)
                continue
            }
            let fd = entry.fd >= 0 ? entry.fd : open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                rest.append(index)  // the cutter's open reports it
                continue
            }
            let table: SeekTable?
            do {
                table = try SeekTable.load(fd: fd, size: entry.size, name: path)
            } catch {
                if entry.fd < 0 { close(fd) }
                for kept in found { close(kept.fd) }
                throw error
            }
            guard let table else {
                if entry.fd < 0 { close(fd) }
                rest.append(index)  // plain zstd: one reader, in order
                continue
            }
            _ = checked.takeDescriptor(index)
            found.append(Source(name: path, fd: fd, table: table))
        }
        return (SeekableParcels(found, parcelSize: parcelSize), checked.subset(rest))
    }

    private init(_ sources: [Source], parcelSize: Int) {
        self.sources = sources
        var parcels: [(source: Int, frames: Range<Int>)] = []
        for (index, source) in sources.enumerated() {
            for run in source.table.runs(targetSize: parcelSize) { parcels.append((index, run)) }
        }
        self.parcels = parcels
    }

    deinit { for source in sources { close(source.fd) } }

    /// Decompressed bytes counted and parcels done so far.
    var statistics: WordCountStatistics {
        WordCountStatistics(bytes: bytes.load(ordering: .relaxed), parcels: done.load(ordering: .relaxed))
    }

    /// The first error a thread met, if any.
    var firstError: ElasticFlowError? { error.withLock { $0 } }

    /// Counts parcels into `counter` until none is left or a thread failed.
    func drain(into counter: WordCounter, parcelSize: Int) {
        guard !parcels.isEmpty else { return }
        let buffer = ParcelBuffer(capacity: parcelSize)
        let reader: SeekableReader
        do throws(ElasticFlowError) {
            reader = try SeekableReader()
        } catch {
            fail(error)
            return
        }
        while firstError == nil {
            let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
            guard index < parcels.count else { return }
            let (source, frames) = parcels[index]
            let file = sources[source]
            var start: UInt64 = 0
            do throws(ElasticFlowError) {
                let (owned, text) = try reader.read(
                    frames, of: file.table, fd: file.fd, name: file.name, boundary: .whitespace,
                    lookPastCap: counter.maxWordSize, into: buffer)
                start = text
                try counter.feed(UnsafeRawBufferPointer(rebasing: buffer.bytes[owned]))
                try counter.finish()
                bytes.add(UInt64(owned.count), ordering: .relaxed)
                done.add(1, ordering: .relaxed)
                buffer.releaseOversized()
            } catch .core(.wordTooLong, _) {
                fail(.wordTooLong(source: file.name, offset: start, cap: counter.maxWordSize))
            } catch {
                fail(error)
            }
        }
    }

    private func fail(_ failure: ElasticFlowError) { error.withLock { if $0 == nil { $0 = failure } } }
}
