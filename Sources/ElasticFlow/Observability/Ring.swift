/// A bounded first-in first-out buffer: appending past `limit` drops the oldest (no shifting).
struct Ring<Element: Sendable>: Sendable {
    let limit: Int
    private var storage: [Element] = []
    private var head = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ element: Element) {
        if storage.count < limit {
            storage.append(element)
        } else {
            storage[head] = element
            head = (head + 1) % limit
        }
    }

    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        head = 0
    }

    /// Oldest first.
    var elements: [Element] { Array(storage[head...] + storage[..<head]) }
}
