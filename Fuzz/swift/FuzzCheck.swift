// What every Swift fuzz target shares: the input as bytes, and a check that names the broken
// promise before it traps (libFuzzer then keeps the input as a crash).
@testable import ElasticFlow

/// Traps, naming the promise, when `condition` is false.
func expect(_ condition: Bool, _ promise: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError("broken promise: \(promise())", file: file, line: line) }
}

/// Bad input must be refused with one line that says what is wrong: never an empty message, never
/// several lines (errors go to a log or a terminal as one line).
func expectOneLine(_ error: ElasticFlowError, file: StaticString = #file, line: UInt = #line) {
    let text = error.description
    expect(
        !text.isEmpty && !text.contains("\n"), "a one-line error, got \(text.debugDescription)", file: file, line: line)
}

/// libFuzzer's input as an array (what the decoders take).
func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}
