import Foundation

/// The chaos bookkeeping of one step: every fault injected or observed, with the receipts it
/// touched, for the `ChaosReport`. Its lock is a leaf (taken under the step lock, nothing under it).
final class FaultBook: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var faults: [(kind: FaultKind, receipts: [UInt64])] = []

    func record(_ kind: FaultKind, receipts: [UInt64]) {
        lock.withLock { faults.append((kind, receipts)) }
    }

    /// The fault we injected last (a byte flip or a drop) took these receipts down with it.
    func addToLastInjected(_ receipts: [UInt64]) {
        lock.withLock {
            if let index = faults.lastIndex(where: { $0.kind != .taskRaises }) { faults[index].receipts += receipts }
        }
    }

    /// Faults by kind, and those whose receipts all closed in the end.
    /// - Parameter isClosed: whether a receipt was closed (read under the step lock).
    func report(isClosed: (UInt64) -> Bool) -> ChaosReport {
        lock.withLock {
            var report = ChaosReport()
            for fault in faults {
                report.injected[fault.kind, default: 0] += 1
                if fault.receipts.allSatisfy(isClosed) { report.recovered[fault.kind, default: 0] += 1 }
            }
            return report
        }
    }
}
