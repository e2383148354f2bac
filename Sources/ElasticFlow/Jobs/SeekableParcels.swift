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

    /// Splits `all` into the seekable zstd files (with decompression `auto`) and the rest, in order.
    /// - Throws: `.invalidArgument` for a seekable file whose seek table is malformed or lies.
    static func split(_ all: [DataSource], decompression: Decompression, parcelSize: Int) throws(ElasticFlowError)
        -> (seekable: SeekableParcels, rest: [DataSource])
    {
        var found: [Source] = []
        var rest: [DataSource] = []
        for source in all {
            guard decompression == .auto, case .file(let path) = source,
                SourceReader.format(ofFile: path) == InputDecoder.zstd
            else {
                rest.append(source)
                continue
            }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            var info = stat()
            guard fd >= 0, fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                if fd >= 0 { close(fd) }
                rest.append(source)
                continue
            }
            let table: SeekTable?
            do {
                table = try SeekTable.load(fd: fd, size: UInt64(info.st_size), name: path)
            } catch {
                close(fd)
                for kept in found { close(kept.fd) }
                throw error
            }
            guard let table else {
                close(fd)
                rest.append(source)
                continue
            }
            found.append(Source(name: path, fd: fd, table: table))
        }
        return (SeekableParcels(found, parcelSize: parcelSize), rest)
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
