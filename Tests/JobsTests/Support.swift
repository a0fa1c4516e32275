import Foundation
import Glibc
import Testing
@_exported import TestSupport
import ModelStore
import BlobStore
import Catalog
import Registry
import Jobs

/// The numeric entries of /proc, read with readdir (an error is not taken for "no processes").
func procPids() -> [pid_t] {
    guard let d = opendir("/proc") else { preconditionFailure("cannot list /proc") }
    defer { closedir(d) }
    var out: [pid_t] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let pid = pid_t(name) { out.append(pid) }
    }
    precondition(!out.isEmpty, "/proc lists no process")
    return out
}

/// The state letter and process group of `pid`, from /proc/<pid>/stat; nil when it is gone.
func procStat(_ pid: pid_t) -> (state: Substring, pgrp: pid_t)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 2, let pgrp = pid_t(fields[2]) else { return nil }
    return (fields[0], pgrp)
}

/// Processes of process group `pgid` that are alive (zombies excluded).
func liveMembers(ofGroup pgid: pid_t) -> [pid_t] {
    procPids().filter { pid in procStat(pid).map { $0.state != "Z" && $0.pgrp == pgid } ?? false }
}

/// Live processes whose environment holds `MODELFS_JOB_DIR=<jobsDir>/…` (any job of one test's
/// service), or exactly `MODELFS_JOB_DIR=<jobsDir>/<id>` when `id` is given.
func liveJobProcesses(jobsDir: String, id: JobID? = nil) -> [pid_t] {
    let prefix = Array("MODELFS_JOB_DIR=\(jobsDir)/\(id ?? "")".utf8)
    return procPids().filter { pid in
        guard let stat = procStat(pid), stat.state != "Z",
              let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        return environ.split(separator: 0).contains { id == nil ? Array($0).starts(with: prefix) : Array($0) == prefix }
    }
}

/// A registry over a catalog in a temporary SQLite file and a memory (or local) object store,
/// with model `m` (ready `v1.safetensors`) and dataset `qa.jsonl` (ready); jobs live in `dir/jobs`.
final class JobsEnv: @unchecked Sendable {
    let dir: String
    let catalog: Catalog
    let objects: any ObjectStore
    let registry: Registry
    var jobsDir: String { dir + "/jobs" }
    static let modelBytes = bytes("base weights \u{1}\u{2}\u{3}")
    static let datasetBytes = bytes("{\"text\": \"good\", \"label\": 1}\n{\"text\": \"bad\", \"label\": 0}\n")

    init(local: Bool = false, seed: Bool = true) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-jobs-\(Test.current?.name.prefix(40) ?? "")-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        catalog = try Catalog(path: dir + "/catalog.sqlite")
        objects = local ? try LocalObjectStore(root: dir + "/blobs") : MemoryObjectStore()
        registry = Registry(catalog: catalog, objects: objects, uploadConcurrency: 2)
        if seed {
            try registry.createModel("m")
            try putVersion("m", "v1.safetensors", JobsEnv.modelBytes)
            try putDataset("qa.jsonl", JobsEnv.datasetBytes)
        }
    }

    deinit {
        // Nothing a test started may outlive it.
        for pid in liveJobProcesses(jobsDir: jobsDir) { kill(-pid, SIGKILL); kill(pid, SIGKILL) }
        _ = eventually { liveJobProcesses(jobsDir: jobsDir).isEmpty }
        for job in (try? catalog.jobs()) ?? [] {
            if let eid = job.executorID, let pid = pid_t(eid), pid > 0 { var status: Int32 = 0; _ = waitpid(pid, &status, WNOHANG) }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    var memory: MemoryObjectStore { objects as! MemoryObjectStore }

    func feed(_ upload: ItemUpload, _ data: [UInt8]) throws {
        try data.withUnsafeBytes { try upload.write($0) }
    }

    @discardableResult
    func putVersion(_ model: String, _ fileName: String, _ data: [UInt8]) throws -> Version {
        let upload = try registry.beginVersion(model: model, fileName: fileName)
        try feed(upload, data)
        return try upload.finishVersion()
    }

    func putDataset(_ fileName: String, _ data: [UInt8]) throws {
        let upload = try registry.beginDataset(fileName: fileName)
        try feed(upload, data)
        _ = try upload.finish()
    }

    func service(_ command: String?, eval: String? = nil, maxRunning: Int = 1, executor: any JobExecutor = LocalExecutor()) -> JobService {
        var configuration = JobService.Configuration(directory: jobsDir, trainCommand: command, evalCommand: eval)
        configuration.maxRunning = maxRunning
        return JobService(registry: registry, executor: executor, configuration: configuration)
    }

    func job(_ id: JobID) throws -> Job {
        guard let job = try catalog.job(id: id) else { throw StoreError.notFound("no job \(id) in the test catalog") }
        return job
    }

    /// One `tick()` with SIGTERM unblocked on this thread: a test runner's worker threads block it,
    /// and a job started from such a thread would inherit the block (see ExecutorTests).
    func tick(_ service: JobService) throws {
        try withSIGTERMUnblocked { try service.tick() }
    }

    /// Ticks `service` until job `id` satisfies `condition` (bounded); returns the job as it is then.
    @discardableResult
    func drive(_ service: JobService, _ id: JobID, until condition: (Job) -> Bool) throws -> Job {
        _ = try eventually {
            try tick(service)
            return condition(try job(id))
        }
        let now = try job(id)
        #expect(condition(now), "job \(id) is \(now.status.rawValue) (\(now.error ?? "no error"))")
        return now
    }

    /// Ticks until the job ended.
    @discardableResult
    func finish(_ service: JobService, _ id: JobID) throws -> Job {
        try drive(service, id) { !$0.status.isActive }
    }

    /// Ticks until the job runs under a known process.
    @discardableResult
    func running(_ service: JobService, _ id: JobID) throws -> (Job, pid_t) {
        let job = try drive(service, id) { $0.status == .running && $0.executorID != nil }
        return (job, pid_t(job.executorID ?? "") ?? 0)
    }

    func submit(_ service: JobService, name: String? = nil, version: String = "v1", params: [String: String] = [:]) throws -> Job {
        try service.submit(JobRequest(model: "m", version: version, dataset: "qa", name: name, params: params))
    }

    /// Opens the gate of a ``gated(_:)`` command.
    func go(_ service: JobService, _ id: JobID, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(FileManager.default.createFile(atPath: service.directory(of: id) + "/go", contents: nil), sourceLocation: sourceLocation)
    }

    func versionNames(_ model: String = "m") throws -> [String] {
        try registry.versions(of: model).map(\.fileName).sorted()
    }

    func read(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { Array($0) } }

    func text(_ path: String) -> String { String(decoding: read(path) ?? [], as: UTF8.self) }
}

func withSIGTERMUnblocked<R>(_ body: () throws -> R) rethrows -> R {
    var term = sigset_t(), old = sigset_t()
    sigemptyset(&term)
    sigaddset(&term, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &term, &old)
    defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
    return try body()
}

final class LockedList<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
}

final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    /// True the first time only.
    func once() -> Bool { lock.withLock { defer { value = true }; return !value } }
}
