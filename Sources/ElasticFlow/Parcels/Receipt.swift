/// The receipt of one parcel: which step and parcel it is, where its bytes came from, how many
/// items (lines) it holds and a checksum of its content. The master's ledger closes a receipt once
/// its result is aggregated; a second result for a closed receipt is dropped.
///
/// Printable as a short string and decodable back:
/// `STEP/SEQUENCE/PARTITION@OFFSET+LENGTH:ITEMS#CHECKSUM`, e.g. `1/42/0@1048576+4194304:812#1a2b3c4d`
/// (partition = index of the source the bytes came from; checksum = CRC32C, hex).
public struct Receipt: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// The step the parcel belongs to (1 for a single run).
    public var step: UInt32
    /// The parcel's number in the step, from 1, in source order.
    public var sequence: UInt64
    /// The index of the source the bytes came from, in the step's list.
    public var partition: UInt32
    /// The parcel's first byte in its source.
    public var offset: UInt64
    /// The parcel's length in bytes.
    public var length: UInt64
    /// The items (lines) the parcel holds.
    public var items: UInt64
    /// The CRC32C of the parcel's bytes.
    public var checksum: UInt32

    /// A receipt of the given fields, as documented on each.
    public init(
        step: UInt32, sequence: UInt64, partition: UInt32, offset: UInt64, length: UInt64, items: UInt64,
        checksum: UInt32
    ) {
        self.step = step
        self.sequence = sequence
        self.partition = partition
        self.offset = offset
        self.length = length
        self.items = items
        self.checksum = checksum
    }

    /// Whether the master never read the parcel's bytes (a shared-input split, or a copy-mode
    /// parcel cut unread): items and checksum are 0, and the worker that processes it reports
    /// them instead. A parcel the master read holds at least one line, so items is never 0.
    public var isUnread: Bool { items == 0 && length > 0 }

    /// The same parcel, one of the two maybe unread: equal but for the items and checksum the
    /// unread one does not have (a step resumed in another copy mode cuts it otherwise).
    func isSameRange(as other: Receipt) -> Bool {
        step == other.step && sequence == other.sequence && partition == other.partition && offset == other.offset
            && length == other.length && (isUnread || other.isUnread || self == other)
    }

    /// `STEP/SEQUENCE/PARTITION@OFFSET+LENGTH:ITEMS#CHECKSUM`, the checksum as 8 hex digits.
    public var description: String {
        let hex = String(checksum, radix: 16)
        return "\(step)/\(sequence)/\(partition)@\(offset)+\(length):\(items)#"
            + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// Decodes the printable form; nil when malformed.
    public init?(_ text: String) {
        guard let hash = text.lastIndex(of: "#"), let colon = text.lastIndex(of: ":"), colon < hash,
            let at = text.firstIndex(of: "@"), at < colon, let plus = text[at...].firstIndex(of: "+"), plus < colon
        else { return nil }
        let ids = text[..<at].split(separator: "/", omittingEmptySubsequences: false)
        let checksumText = text[text.index(after: hash)...]
        guard ids.count == 3, let step = UInt32(ids[0]), let sequence = UInt64(ids[1]),
            let partition = UInt32(ids[2]), let offset = UInt64(text[text.index(after: at)..<plus]),
            let length = UInt64(text[text.index(after: plus)..<colon]),
            let items = UInt64(text[text.index(after: colon)..<hash]),
            checksumText.count == 8, let checksum = UInt32(checksumText, radix: 16)
        else { return nil }
        self.init(
            step: step, sequence: sequence, partition: partition, offset: offset, length: length, items: items,
            checksum: checksum)
    }
}
