import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// How `LineLogHandler` writes a line: `text` for people, `json` (one object a line) for log shippers.
enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}

/// The CLI's log handler: one line per event on standard error, each written with one write(2)
/// (whole lines even when threads log at once), each starting with its time (ISO 8601, UTC,
/// milliseconds). swift-log's `StreamLogHandler` has no JSON and no milliseconds, hence this one.
///
/// - text: `2026-12-02T15:23:44.123Z info elasticflow.worker: MESSAGE key=value key="two words"`
///   (metadata of 4 characters or more that the message already shows left out)
/// - json: `{"timestamp":"…","level":"info","label":"elasticflow.worker","message":"…","metadata":{…}}`
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let own = event.metadata { all.merge(own) { _, new in new } }
        if let error = event.error { all["error", default: "\(error)"] = "\(error)" }
        let line = Self.line(
            format: format, timestamp: Self.timestamp(), level: event.level, label: label,
            message: event.message.description, metadata: all)
        writeLine(line, to: STDERR_FILENO)
    }

    /// The line for one event, without its newline.
    static func line(
        format: LogFormat, timestamp: String, level: Logger.Level, label: String, message: String,
        metadata: Logger.Metadata
    ) -> String {
        // Sorted: the same event gives the same line, whatever order the metadata was merged in.
        let pairs = metadata.map { ($0.key, flat($0.value)) }.sorted { $0.0 < $1.0 }
        switch format {
        case .text:
            var line = "\(timestamp) \(level) \(label): \(oneLine(message))"
            // A value the message already shows (a receipt, a node address) is noise to a reader; JSON
            // keeps it. Short values (a step number) always stay: "1" is in most messages by chance.
            for (key, value) in pairs where value.count < 4 || !message.contains(value) {
                line += " \(key)=\(quotedIfNeeded(value))"
            }
            return line
        case .json:
            let record = Record(
                timestamp: timestamp, level: level.rawValue, label: label, message: message,
                metadata: Dictionary(uniqueKeysWithValues: pairs))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            // Encoding strings and a string dictionary cannot fail; the fallback keeps the line JSON.
            guard let data = try? encoder.encode(record) else {
                return #"{"level":"error","message":"unencodable log event"}"#
            }
            return String(decoding: data, as: UTF8.self)
        }
    }

    private struct Record: Encodable {
        let timestamp: String
        let level: String
        let label: String
        let message: String
        let metadata: [String: String]
    }

    /// A metadata value as one string (lists and dictionaries in swift-log's own rendering).
    private static func flat(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let value): return value.description
        default: return value.description
        }
    }

    /// Line breaks would split an event over lines: shown as `\n` in text.
    private static func oneLine(_ text: String) -> String {
        guard text.contains(where: \.isNewline) else { return text }
        return text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func quotedIfNeeded(_ value: String) -> String {
        let plain = !value.isEmpty && !value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }
        if plain { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return "\"" + oneLine(escaped) + "\""
    }

    /// Now as `2026-12-02T15:23:44.123Z` (UTC, milliseconds), without a shared formatter.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = Int(now.tv_nsec / 1_000_000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}
