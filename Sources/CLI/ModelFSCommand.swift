import ArgumentParser

/// `modelfs`: a model store you mount, and the commands that work on the store directly.
public struct ModelFSCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "modelfs",
        abstract: "A model store: versions of AI models as files, bytes in object storage, facts in SQLite.",
        subcommands: [
            MountCommand.self, ImportCommand.self, DownloadCommand.self,
            ModelsCommand.self, VersionsCommand.self, StatsCommand.self,
            ModelCommand.self, VersionCommand.self, DatasetsCommand.self, DatasetCommand.self,
            AliasCommand.self, CompareCommand.self, LogCommand.self, TrainCommand.self, JobsCommand.self, ServeCommand.self, WebCommand.self, VerifyCommand.self, GCCommand.self, RecoverCommand.self,
        ])

    public init() {}
}
