import Foundation

/// Cuts a step's sources into parcels and numbers them, under a lock of its own, so the disk read
/// never happens under the step lock. The sequence number is assigned, and the receipt journaled,
/// under that lock, so sequence order is file order and the journal sees receipts in order.
///
/// Copy mode reads each parcel (its receipt carries the parcel's line count and CRC32C, taken in
/// one pass), except, from files sent with `sendfile`, a parcel inside a file: it is cut unread
/// (`cutUnread`). Shared-input mode reads nothing: it splits the files by size (`ByteRangeSplitter`)
/// and its receipts carry only the range; what a worker processed comes back with the result.
///
/// Lock order: this lock, then the buffer pool's and the journal's (never the step lock under it).
final class StepCutter: @unchecked Sendable {
    /// What `next` found.
    enum Cut {
        /// A new parcel, not yet in the ledger (shared input: no buffer, the workers read it).
        case parcel(Receipt, ParcelBuffer?)
        /// Every parcel has been cut (the journal knows).
        case exhausted
        case failed(ElasticFlowError)
    }

    // Guarded by `lock`.
    private let lock = NSLock()
    private let cutter: ParcelCutter?
    /// Shared-input mode's splitter (then `cutter` is nil).
    let splitter: ByteRangeSplitter?
    /// Copy mode over regular files only (no standard input): the files, open for `sendfile`
    /// and re-reads, and what they were when the step began. nil otherwise.
    let copyFiles: (files: SourceFiles, fingerprints: [SourceFingerprint])?
    private var sequence: UInt64 = 0
    private var done = false
    /// Copy mode from files (`cutUnread()`): parcels inside a file are cut without being read.
    private var unread = false
    private let step: UInt32
    private let journal: StepJournalWriter?
    private let buffers: ParcelBufferPool

    init(
        plan: StepPlan, parcelSize: Int, maxWordSize: Int, decompression: Decompression = .auto, shared: Bool,
        buffers: ParcelBufferPool
    ) throws(ElasticFlowError) {
        // Offsets of a compressed source are offsets in its text: such a file can be neither split
        // by bytes (shared input; a seekable zstd file is split by its frames instead) nor sent or
        // re-read from the file (sendfile, pread).
        let splitter =
            shared
            ? try ByteRangeSplitter(sources: plan.sources, splitSize: parcelSize, decompression: decompression) : nil
        var compressed: String?
        if decompression == .auto {
            for (index, source) in plan.sources.enumerated() {
                guard case .file(let path) = source, SourceReader.format(ofFile: path) != InputDecoder.plain,
                    splitter?.tables[index] == nil
                else { continue }
                compressed = path
                break
            }
        }
        if shared, let compressed {
            let format = InputDecoder.name(of: SourceReader.format(ofFile: compressed))
            throw .invalidArgument(
                "'\(compressed)' is \(format)-compressed: shared-input mode splits files by byte range and "
                    + "cannot split it (only zstd's seekable format splits by frames: `elasticflow compress "
                    + "--seekable`); count it without --shared-input (copy mode), or give --decompress none")
        }
        if let splitter {
            self.splitter = splitter
            cutter = nil
        } else {
            cutter = try ParcelCutter(
                sources: plan.sources, parcelSize: parcelSize, maxWordSize: maxWordSize, decompression: decompression)
            self.splitter = nil
        }
        var paths: [String] = []
        var fingerprints: [SourceFingerprint] = []
        for source in plan.sources {
            guard !shared, case .file(let path) = source, let fingerprint = try? SourceFingerprint.of(path: path)
            else { break }
            paths.append(path)
            fingerprints.append(fingerprint)
        }
        copyFiles =
            !shared && compressed == nil && paths.count == plan.sources.count
            ? (SourceFiles(paths: paths), fingerprints) : nil
        step = plan.step
        journal = plan.journal
        self.buffers = buffers
    }

    /// From now on, a parcel that is a byte range inside a file, short of its end, is cut without
    /// reading it (`ParcelCutter.nextRange`): its receipt carries no line count or checksum
    /// (`Receipt.isUnread`), which the worker that processes it sends back instead
    /// (`frameFlagDigest`). For copy mode over files sent with `sendfile`: the master then reads
    /// about 64 KiB of each parcel, not all of it. Call before the first `next`.
    func cutUnread() {
        lock.withLock { unread = cutter != nil && copyFiles != nil }
    }

    /// Whether parcels are cut unread (`cutUnread`).
    var cutsUnread: Bool { lock.withLock { unread } }

    /// Reads the next parcel (a `read(2)`, or a copy from the read-ahead block) and journals its
    /// receipt. Not under the step lock.
    func next() -> Cut {
        lock.lock()
        defer { lock.unlock() }
        if done { return .exhausted }
        if let splitter { return nextSplit(splitter) }
        if unread {
            do throws(ElasticFlowError) {
                if let origin = try cutter!.nextRange() {
                    return .parcel(try unreadReceipt(origin.source, origin.offset, UInt64(origin.length)), nil)
                }
            } catch {
                done = true
                return .failed(error)
            }
        }
        let buffer = buffers.takeParcel()
        do throws(ElasticFlowError) {
            guard let origin = try cutter!.next(into: buffer) else {
                buffers.recycleParcel(buffer)
                done = true
                try journal?.allCut()
                return .exhausted
            }
            sequence += 1
            let (checksum, lines) = crc32cAndLines(buffer.bytes)
            let receipt = Receipt(
                step: step, sequence: sequence, partition: UInt32(origin.source), offset: origin.offset,
                length: UInt64(origin.length), items: lines, checksum: checksum)
            // On a resumed step this also checks the parcel against the journal's receipt.
            try journal?.cut(receipt)
            return .parcel(receipt, buffer)
        } catch {
            done = true
            return .failed(error)
        }
    }
}

extension StepCutter {
    /// Whether the sources changed since the step began (shared input, or copy mode over files).
    /// - Returns: a one-line reason naming the file, or nil.
    func changedSource() -> String? {
        if let splitter { return splitter.changedSource() }
        guard let copyFiles else { return nil }
        return SourceFingerprint.firstChange(paths: copyFiles.files.paths, then: copyFiles.fingerprints)
    }

    /// Whether a copy-mode parcel is one byte range of one regular file, which can be sent and
    /// re-read from the file. A packed parcel (several small files, `ParcelCutter`) runs past the
    /// end of its first file and holds separators no file has: it lives in its buffer only.
    func isFileRange(_ receipt: Receipt) -> Bool {
        guard let copyFiles, copyFiles.fingerprints.indices.contains(Int(receipt.partition)) else { return false }
        let size = copyFiles.fingerprints[Int(receipt.partition)].size
        return receipt.offset <= size && receipt.length <= size - receipt.offset
    }

    /// Reads a copy-mode parcel again from its file (the master's own share of a receipt whose
    /// bytes were sent from the file), checking them against the receipt.
    /// - Returns: the parcel's bytes in `buffer`.
    func reread(_ receipt: Receipt, into buffer: ParcelBuffer) throws(ElasticFlowError) -> UnsafeRawBufferPointer {
        guard let copyFiles else { throw .invalidArgument("parcel \(receipt) has no file to be read from") }
        let path = copyFiles.files.paths[Int(receipt.partition)]
        let fd = try copyFiles.files.descriptor(Int(receipt.partition))
        let count = Int(receipt.length)
        if buffer.capacity < count { buffer.grow(to: count) }
        buffer.count = 0
        while buffer.count < count {
            let n = pread(
                fd, buffer.base + buffer.count, count - buffer.count, off_t(receipt.offset) + off_t(buffer.count))
            if n > 0 {
                buffer.count += n
            } else if n == 0 {
                throw .cluster("'\(path)' changed during the step: parcel \(receipt) is past its end")
            } else if errno != EINTR {
                throw .io(path: path, operation: "read", errno: errno)
            }
        }
        // A parcel cut unread has nothing to check against here: its digest is checked against
        // the workers' (`StepRun.claim`).
        if !receipt.isUnread {
            let (checksum, lines) = crc32cAndLines(buffer.bytes)
            guard checksum == receipt.checksum, lines == receipt.items else {
                throw .cluster("'\(path)' changed during the step: parcel \(receipt) now reads otherwise")
            }
        }
        return buffer.bytes
    }

    /// Under `lock`: the next receipt of a parcel the master does not read (a split, or a copy-mode
    /// parcel cut unread), items and checksum 0, journaled.
    private func unreadReceipt(_ source: Int, _ offset: UInt64, _ length: UInt64) throws(ElasticFlowError) -> Receipt {
        sequence += 1
        let receipt = Receipt(
            step: step, sequence: sequence, partition: UInt32(source), offset: offset, length: length, items: 0,
            checksum: 0)
        try journal?.cut(receipt)
        return receipt
    }

    /// The next split of a shared source (under `lock`): a receipt with its range and no content
    /// figures (items and checksum 0) — no byte of the file is read.
    private func nextSplit(_ splitter: ByteRangeSplitter) -> Cut {
        do throws(ElasticFlowError) {
            guard let range = splitter.next() else {
                done = true
                try journal?.allCut()
                return .exhausted
            }
            return .parcel(try unreadReceipt(range.source, range.offset, range.length), nil)
        } catch {
            done = true
            return .failed(error)
        }
    }
}

/// Lines in a parcel (newlines, plus a last line without one), counted with memchr.
func lineCount(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    guard var cursor = bytes.baseAddress, !bytes.isEmpty else { return 0 }
    let end = cursor + bytes.count
    var lines: UInt64 = 0
    while let found = memchr(cursor, 0x0A, end - cursor) {
        lines += 1
        cursor = UnsafeRawPointer(found) + 1
    }
    return cursor < end ? lines + 1 : lines
}
