import ArgumentParser
import Catalog
import Foundation
import Jobs
import ModelStore
import Registry

/// Flags that choose how jobs run: the training and evaluation commands and the executor.
struct JobOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The command every training job runs, through /bin/sh, with MODELFS_* variables (env MODELFS_TRAIN_COMMAND).", valueName: "cmd"))
    var trainCommand: String?

    @Option(help: ArgumentHelp("The command every evaluation job runs, through /bin/sh; it writes a JSON object of numbers to $MODELFS_METRICS_FILE (env MODELFS_EVAL_COMMAND).", valueName: "cmd"))
    var evalCommand: String?

    @Option(help: "Where jobs run: local (child processes) or slurm (sbatch).")
    var executor: String = ProcessInfo.processInfo.environment["MODELFS_EXECUTOR"] ?? "local"

    @Option(help: "Jobs running at once on the local executor.")
    var maxJobs = 1

    func service(_ registry: Registry, dataDir: String, mountpoint: String?) throws -> JobService {
        let executor: any JobExecutor
        switch self.executor {
        case "local": executor = LocalExecutor()
        case "slurm": executor = SlurmExecutor()
        default: throw CLIError("--executor is local or slurm, not \(self.executor)")
        }
        let command = trainCommand ?? ProcessInfo.processInfo.environment["MODELFS_TRAIN_COMMAND"]
        let eval = evalCommand ?? ProcessInfo.processInfo.environment["MODELFS_EVAL_COMMAND"]
        var configuration = JobService.Configuration(directory: dataDir + "/jobs", trainCommand: command, evalCommand: eval)
        configuration.maxRunning = max(1, maxJobs)
        configuration.mountpoint = mountpoint
        return JobService(registry: registry, executor: executor, configuration: configuration, logger: Log.logger)
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Start a fine-tuning job from a model version and a dataset, and follow it.",
        discussion: "Free hyper-parameters are KEY=VALUE arguments: modelfs train --model BERT --version v1 --dataset qa epochs=3")

    @Option(help: "The model.") var model: String
    @Option(help: "The version to start from.") var version: String
    @Option(help: "The dataset.") var dataset: String
    @Option(help: "The job's name (default <model>-<version>-ft-<n>).") var name: String?
    @Argument(help: "Hyper-parameters as KEY=VALUE.") var params: [String] = []
    @Flag(help: "Queue the job and return; a mount of this store with a training command runs it.") var detach = false
    @OptionGroup var jobOptions: JobOptions
    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            // The same checks as the control file: the request goes through JobRequest.parse as JSON.
            var fields = ["model": model, "version": version, "dataset": dataset]
            if let name { fields["name"] = name }
            let request = try JobRequest.parse(try requestBytes(fields, params))
            let service = try jobOptions.service(registry, dataDir: store.resolvedDataDir, mountpoint: nil)
            let job = try service.submit(request)
            print("job \(job.id) queued")
            if detach { return }
            try follow(job.id, service: service, drive: true)
        }
    }
}

/// A request as a control file takes it (one JSON object): the named fields and `KEY=VALUE` parameters.
func requestBytes(_ fields: [String: String], _ params: [String]) throws -> [UInt8] {
    var fields = fields
    for p in params {
        guard let eq = p.firstIndex(of: "="), eq != p.startIndex else { throw CLIError("'\(p)' is not KEY=VALUE") }
        let key = String(p[..<eq])
        guard fields[key] == nil else { throw CLIError("\(key) is given twice") }
        fields[key] = String(p[p.index(after: eq)...])
    }
    return Array(try JSONSerialization.data(withJSONObject: fields))
}

/// Prints a job's log as it grows until the job ends; `drive` runs the job from this process.
func follow(_ id: JobID, service: JobService?, drive: Bool, catalog: Catalog? = nil, logPath: String? = nil) throws {
    let catalog = catalog ?? service!.registry.catalog
    let path = logPath ?? service!.logPath(of: id)
    var offset: UInt64 = 0
    while true {
        if drive { try service?.tick() }
        if let handle = FileHandle(forReadingAtPath: path) {
            try? handle.seek(toOffset: offset)
            let data = handle.readDataToEndOfFile()
            offset += UInt64(data.count)
            FileHandle.standardOutput.write(data)
            try? handle.close()
        }
        guard let job = try catalog.job(id: id) else { throw CLIError("no job \(id)") }
        if !job.status.isActive {
            if job.status == .succeeded {
                print("job \(id) succeeded: \(job.outputs.isEmpty ? "no checkpoints" : job.outputs.joined(separator: ", "))")
                return
            }
            throw CLIError("job \(id) \(job.status.rawValue)\(job.error.map { ": " + $0 } ?? "")")
        }
        usleep(300_000)
    }
}

struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "List jobs, or show one (--follow to tail its log).")

    @Argument(help: "A job id.") var id: String?
    @Flag(help: "Follow the job's log until it ends.") var follow = false
    @Flag(help: "Cancel the job.") var cancel = false
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            try refuseAnotherUsersStore()
            let registry = try store.openRegistry()
            let catalog = registry.catalog
            let logPath = { (id: JobID) in store.resolvedDataDir + "/jobs/" + id.rawValue + "/log" }
            guard let id = id.map({ JobID($0) }) else {
                let all = try catalog.jobs()
                if json { return try printJSON(all) }
                printTable(["JOB", "KIND", "STATUS", "OWNER", "MODEL", "VERSION", "DATASET", "EXECUTOR", "OUTPUTS"],
                           all.map { [$0.id.rawValue, $0.kind.rawValue, $0.status.rawValue, $0.owner.map { userName($0.uid) } ?? "-", $0.model,
                                      $0.version, $0.dataset, $0.executor, $0.outputs.joined(separator: ",")] })
                return
            }
            guard let job = try catalog.job(id: id) else { throw StoreError.notFound("no job \(id)") }
            if cancel {
                if let owner = job.owner, getuid() != 0, getuid() != owner.uid {
                    throw StoreError(.accessDenied, "job \(id) is \(userName(owner.uid))'s: only they or root cancel it")
                }
                let service = JobService(registry: registry, executor: job.executor == "slurm" ? SlurmExecutor() : LocalExecutor(),
                                         configuration: .init(directory: store.resolvedDataDir + "/jobs", trainCommand: nil))
                try service.cancel(id)
                print("job \(id) cancelled")
                return
            }
            if follow { return try Jobs_follow(id, catalog: catalog, logPath: logPath(id)) }
            if json { return try printJSON(job) }
            print("job \(job.id): \(job.status.rawValue)\(job.error.map { " (" + Names.printable($0) + ")" } ?? "")")
            print("  \(job.model)/\(job.version) on \(job.dataset), \(job.executor)\(job.executorID.map { " " + $0 } ?? "")")
            if !job.params.isEmpty { print("  params: " + job.params.sorted { $0.key < $1.key }.map { "\($0.key)=\(Names.printable($0.value))" }.joined(separator: " ")) }
            if !job.outputs.isEmpty { print("  outputs: " + job.outputs.joined(separator: ", ")) }
            print("  log: \(logPath(id))")
        }
    }
}

extension JobsCommand {
    /// The data dir is its mount's user's (0700, or 0711 once another user's job ran): another
    /// user cannot open its catalog. Said plainly, with what they can do instead, rather than
    /// the first `mkdir` or `open` that fails inside it.
    func refuseAnotherUsersStore() throws(StoreError) {
        let dir = store.resolvedDataDir
        var st = stat()
        guard stat(dir, &st) == 0, st.st_uid != getuid(), access(dir, R_OK | W_OK | X_OK) != 0 else { return }
        throw StoreError(.accessDenied, "the store in \(dir) is \(userName(st.st_uid))'s: only they (or root) use it from "
                         + "the command line; through its mount, read jobs/<id>/status and log, and cancel your own job "
                         + "with: echo cancel > <mount>/jobs/<id>/control")
    }
}

private func Jobs_follow(_ id: JobID, catalog: Catalog, logPath: String) throws {
    try follow(id, service: nil, drive: false, catalog: catalog, logPath: logPath)
}

struct DatasetsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "datasets", abstract: "List datasets.")
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let all = try store.openRegistry().catalog.datasets()
            if json { return try printJSON(all) }
            printTable(["FILE", "STATUS", "SIZE", "RECORDS", "SHA256"],
                       all.map { [$0.fileName, $0.status.rawValue, "\($0.size)", $0.records.map { "\($0)" } ?? "-", String(($0.sha256 ?? "-").prefix(16))] })
        }
    }
}

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dataset", abstract: "Upload or delete a dataset.",
                                                    subcommands: [Add.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Upload a file as a dataset (jsonl json csv tsv txt parquet zip tar tar.gz).")
        @Argument(help: "The file.") var file: String
        @Option(help: "The dataset's name (default: the file's name without extension).") var name: String?
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let registry = try store.openRegistry()
                let base = (file as NSString).lastPathComponent
                let (fileName, format) = try Formats.splitDataset(base)
                let upload = try registry.beginDataset(fileName: (name ?? fileName) + "." + format)
                // Ready or failed, the datasets manifest in the bucket follows.
                defer { registry.publishDatasetsManifestIfBehind() }
                guard let handle = FileHandle(forReadingAtPath: file) else {
                    upload.abort(reason: "cannot read \(file)")
                    throw CLIError("cannot read \(file)")
                }
                while true {
                    let data = handle.readData(ofLength: 1 << 20)
                    if data.isEmpty { break }
                    try data.withUnsafeBytes { b in Result { () throws(StoreError) in try upload.write(b) } }.get()
                }
                guard case .dataset(let d) = try upload.finish() else { return }
                print("datasets/\(d.fileName) ready: \(d.size) bytes\(d.records.map { ", \($0) records" } ?? "")")
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a dataset.")
        @Argument(help: "The dataset.") var name: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.deleteDataset(try port.dataset(called: name).id, by: .now)
            }
        }
    }
}
