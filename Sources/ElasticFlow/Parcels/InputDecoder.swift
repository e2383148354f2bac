internal import CElasticFlow

/// The C core's streaming decoder of compressed input (`ef_decoder`, CCore/src/decode.c): one
/// input at a time, contexts kept from one input to the next. Single-threaded, like the handle.
final class InputDecoder {
    private let handle: OpaquePointer

    /// - Throws: `ElasticFlowError.core(.outOfMemory, …)` when the handle cannot be made.
    init() throws(ElasticFlowError) {
        guard let handle = ef_decoder_create() else {
            throw .core(.outOfMemory, operation: "creating a decoder")
        }
        self.handle = handle
    }

    deinit { ef_decoder_free(handle) }

    /// The format an input starting with `bytes` is in (`ef_format_detect`), or nil when more bytes
    /// are needed to tell (fewer than 4 that begin a magic number, and the input goes on).
    static func format(of bytes: UnsafeRawBufferPointer, atEnd: Bool) -> Int32? {
        let code = ef_format_detect(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, atEnd ? 1 : 0)
        return code < 0 ? nil : code
    }

    static let plain = Int32(EF_FORMAT_PLAIN.rawValue)
    static let zstd = Int32(EF_FORMAT_ZSTD.rawValue)
    static let magicSize = Int(EF_FORMAT_MAGIC_SIZE)

    /// "gzip", "zstd", "lz4", "bzip2" or "plain".
    static func name(of format: Int32) -> String { ef_format_name(format).map { String(cString: $0) } ?? "unknown" }

    /// Starts a new input in `format`.
    func reset(_ format: Int32) throws(ElasticFlowError) {
        try check(ef_decoder_reset(handle, format), "starting a \(Self.name(of: format)) decoder")
    }

    /// Decodes from `input` into `destination[0..<capacity]` (`ef_decoder_decode`).
    /// - Returns: the bytes written (0: more input needed) or a negative `EF_E*` code, and the
    ///   input bytes used.
    func decode(_ input: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer, capacity: Int) -> (
        written: Int, used: Int
    ) {
        var used = 0
        let written = ef_decoder_decode(
            handle, input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count, &used,
            destination.assumingMemoryBound(to: UInt8.self), capacity)
        return (written, used)
    }

    /// Whether the input ended between two members or frames (`ef_decoder_finish`): false when it
    /// ended inside one (a truncated file).
    func endedCleanly() -> Bool { ef_decoder_finish(handle) == Int32(EF_OK) }

    /// Compressed bytes consumed since the reset (`ef_decoder_offset`).
    var offset: UInt64 { ef_decoder_offset(handle) }

    /// The library's reason for the latest corruption (`ef_decoder_message`).
    var message: String { String(cString: ef_decoder_message(handle)) }
}
