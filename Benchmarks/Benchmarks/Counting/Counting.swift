// The word counter alone (`WordCounter`, over ef_counter_*), without files or threads: what one
// worker does with one parcel, and what travels back (the serialized table).
import Benchmark
import BenchmarkSupport
import ElasticFlow

let benchmarks: @Sendable () -> Void = {
    useDefaultConfiguration()
    let parcel = sampleParcel()

    for lowercase in [false, true] {
        let flavour = lowercase ? ", lowercase" : ""
        // One counter reused across iterations and cleared outside the measurement, as a worker
        // reuses its table: after the first parcel the table has its capacity and feed never grows it.
        let counter = try! WordCounter(partitions: 16, lowercase: lowercase)
        Benchmark("Count 4 MiB parcel, feed+finish\(flavour)") { benchmark in
            counter.removeAll()
            try measure(benchmark, bytes: parcel.count) {
                try counter.feed(parcel)
                try counter.finish()
            }
        }
    }

    // The same into a new counter each time: creation and every table growth are measured too.
    Benchmark("Count 4 MiB parcel, new counter+feed+finish, lowercase") { benchmark in
        try measure(benchmark, bytes: parcel.count) {
            let counter = try WordCounter(partitions: 16, lowercase: true)
            try counter.feed(parcel)
            try counter.finish()
            blackHole(counter)
        }
    }

    // The count table of one lowercased parcel: what a worker returns in a RESULT frame.
    let table = try! WordCounter(partitions: 16, lowercase: true)
    try! table.feed(parcel)
    try! table.finish()
    let serialized = try! table.serialized()
    let label = "table of a 4 MiB parcel (\(table.distinct) words, \(serialized.count / 1024) KiB)"

    Benchmark("Serialize \(label)") { benchmark in
        try measure(benchmark, bytes: serialized.count) {
            blackHole(try table.serialized())
        }
    }

    let destination = try! WordCounter(partitions: 16, lowercase: true)
    Benchmark("Deserialize into an empty counter, \(label)") { benchmark in
        destination.removeAll()
        try measure(benchmark, bytes: serialized.count) {
            blackHole(try destination.merge(serialized: serialized))
        }
    }

    // What the master does with every result after the first: the words are already there.
    let accumulator = try! WordCounter(partitions: 16, lowercase: true)
    try! accumulator.merge(serialized: serialized)
    Benchmark("Deserialize into a counter holding the same words, \(label)") { benchmark in
        try measure(benchmark, bytes: serialized.count) {
            blackHole(try accumulator.merge(serialized: serialized))
        }
    }
}
