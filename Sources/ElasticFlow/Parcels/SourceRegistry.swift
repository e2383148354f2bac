/// The app's own sources (`ChunkSource`) by name, for steps that name their sources as strings
/// (`StepDefinition.sources`, the step journal): a name registered here is that source, any other
/// is a path (`-`: standard input). A resumed step finds its sources again through the registry
/// of the `StepQueue` (or `StepExecution.resume`) that resumes it.
public struct SourceRegistry: Sendable {
    private var sources: [String: any ChunkSource] = [:]

    public init(_ sources: [any ChunkSource] = []) {
        for source in sources { register(source) }
    }

    /// Registers `source` under its name (replacing one of the same name).
    public mutating func register(_ source: any ChunkSource) { sources[source.name] = source }

    /// The names of a step's sources as the sources to read.
    /// - Parameter journaled: whether the step keeps a journal: then every custom source must be
    ///   able to restart (a resume reads it again).
    /// - Throws: `.invalidArgument` naming a custom source that cannot restart, for a journaled step.
    func resolve(_ names: [String], journaled: Bool) throws(ElasticFlowError) -> [DataSource] {
        var resolved: [DataSource] = []
        for name in names {
            guard let source = sources[name] else {
                resolved.append(DataSource(argument: name))
                continue
            }
            if journaled && !source.isRestartable {
                throw .invalidArgument(
                    "source '\(name)' cannot restart, so a step over it cannot be journaled: a resume would "
                        + "have to read it again (run it without a step-data directory, or make it restartable)")
            }
            resolved.append(.custom(source))
        }
        return resolved
    }
}
