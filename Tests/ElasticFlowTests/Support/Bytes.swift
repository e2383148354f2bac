import Testing

/// Bytes (a command's output, a reference count) for `#expect` comparisons: equal when the bytes
/// are, described by their size and first bytes. `#expect` on two `[UInt8]` that differ computes
/// their difference to report it, which for two outputs of a megabyte runs for many minutes (CI
/// once hung on one); this type is no collection, so a failure is reported at once.
struct Bytes: Equatable, CustomTestStringConvertible {
    let value: [UInt8]

    init(_ value: [UInt8]) { self.value = value }

    var testDescription: String {
        let head = String(decoding: value.prefix(60), as: UTF8.self)
        return "\(value.count) bytes, \(head.debugDescription)\(value.count > 60 ? "…" : "")"
    }
}
