import Foundation

/// Where a training job is: queued → running → succeeded | failed | cancelled.
public enum JobStatus: String, Sendable, Codable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    public var isActive: Bool { self == .queued || self == .running }
}

/// What a job does: `train` runs the mount's `--train-command` and its checkpoints become
/// versions; `evaluate` runs `--eval-command` and the metrics it writes are stored on the version.
public enum JobKind: String, Sendable, Codable, CaseIterable {
    case train, evaluate
}

/// The user a job runs as (their supplementary groups come from the group database, as `su` gives them).
public struct JobOwner: Sendable, Equatable, Codable {
    public var uid: UInt32
    public var gid: UInt32
    public init(uid: UInt32, gid: UInt32) { self.uid = uid; self.gid = gid }
}

/// A job: a model version, a dataset, free hyper-parameters, and what became of it.
public struct Job: Sendable, Equatable, Codable {
    /// Also its name and its directory under `jobs/`.
    public var id: JobID
    /// A stable number for the job (its inode), never reused.
    public var number: Int64 = 0
    /// The node that started and follows it (a shared catalog); nil on one node or until it starts.
    public var node: String? = nil
    public var model: String
    public var version: String
    public var dataset: String
    public var params: [String: String]
    public var kind: JobKind = .train
    /// A training job's request to evaluate each checkpoint on this dataset once it is a version.
    public var evaluate: String? = nil
    /// Who asked for it: the job runs as this user. Nil: the mount's user (jobs from before owners).
    public var owner: JobOwner? = nil
    public var status: JobStatus
    /// `local` or `slurm`.
    public var executor: String
    /// The process id (local) or Slurm job id, once started.
    public var executorID: String?
    public var error: String?
    public var exitCode: Int?
    /// Versions the job's checkpoints became.
    public var outputs: [String]
    public var created: Date
    public var started: Date?
    public var finished: Date?

    public init(id: JobID, model: String, version: String, dataset: String, params: [String: String], status: JobStatus,
                executor: String, executorID: String? = nil, error: String? = nil, exitCode: Int? = nil, outputs: [String] = [],
                created: Date, started: Date? = nil, finished: Date? = nil) {
        self.id = id; self.model = model; self.version = version; self.dataset = dataset; self.params = params
        self.status = status; self.executor = executor; self.executorID = executorID; self.error = error
        self.exitCode = exitCode; self.outputs = outputs; self.created = created; self.started = started; self.finished = finished
    }
}
