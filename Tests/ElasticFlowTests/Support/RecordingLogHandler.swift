import Foundation
import Logging

/// A swift-log handler that keeps every event it is given (level, message, metadata), for tests
/// of what the library logs in this process.
struct RecordingLogHandler: LogHandler {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: Logger.Metadata
    }

    /// The events, in order, shared by every copy of the handler.
    final class Store: @unchecked Sendable {
        // Guarded by lock.
        private let lock = NSLock()
        private var entries: [Entry] = []
        func append(_ entry: Entry) { lock.withLock { entries.append(entry) } }
        var all: [Entry] { lock.withLock { entries } }
    }

    let store: Store
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        store.append(
            Entry(
                level: event.level, message: event.message.description,
                metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
    }

    /// A logger that records into `store`.
    static func logger(_ store: Store, level: Logger.Level = .trace) -> Logger {
        Logger(label: "test") { _ in
            var handler = RecordingLogHandler(store: store)
            handler.logLevel = level
            return handler
        }
    }
}
