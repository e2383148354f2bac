import Foundation
import Synchronization

extension LocalWordCount {
    /// Counts the words of every source, as `run(_:options:progress:)`, showing the count on
    /// `board` as step 1 with the master alone: its progress about five times a second, then its
    /// end (its figures, or its failure).
    /// - Parameters:
    ///   - sources: files, standard input or the app's own sources, counted as one text.
    ///   - options: case folding, threads, parcel size and limits.
    ///   - board: the status board to report to.
    ///   - progress: when given, also called with every progress report (a progress bar).
    /// - Returns: the merged counter and what was processed.
    /// - Throws: `ElasticFlowError`, as `run(_:options:progress:)`.
    public static func run(
        _ sources: [DataSource], options: WordCountOptions = .init(), reportingTo board: StatusBoard,
        progress: (@Sendable (StepProgress) -> Void)? = nil
    ) throws(ElasticFlowError) -> (WordCounter, WordCountStatistics) {
        let total = DataSource.totalSize(of: sources, decompression: options.decompression)
        board.beginLocal(task: "wordcount", bytesTotal: total)
        let started = monotonicSeconds()
        let last = Mutex(StepProgress(bytesDone: 0, bytesTotal: total, parcelsDone: 0, parcelsCut: 0, seconds: 0))
        do {
            let result = try run(sources, options: options) { step in
                last.withLock { $0 = step }
                board.record(progress: step)
                progress?(step)
            }
            let done = StepProgress(
                bytesDone: result.1.bytes, bytesTotal: total, parcelsDone: result.1.parcels,
                parcelsCut: result.1.parcels, seconds: monotonicSeconds() - started)
            board.endLocal(progress: done, failure: nil)
            return result
        } catch {
            var failed = last.withLock { $0 }
            failed.seconds = monotonicSeconds() - started
            board.endLocal(progress: failed, failure: error.description)
            throw error
        }
    }
}
