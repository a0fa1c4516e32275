import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import Jobs
import ModelStore
import Registry

/// Jobs over HTTP: submitted with the request and rules of `jobs/submit` and `modelfs train`, as
/// the user who asks; cancelled by their owner or root; their log read from an offset, for a tail.
/// A mount serving the API (`mount --web`) runs them; `modelfs web` records them for a mount of
/// the same store to run, as `modelfs train --detach` does.
extension API {
    static let jobEndpoints: [Endpoint] = [
        Endpoint(method: .post, path: "/api/v1/jobs", handler: API.submitJob),
        Endpoint(method: .get, path: "/api/v1/jobs/{job}/log", handler: API.jobLog),
        Endpoint(method: .post, path: "/api/v1/jobs/{job}/cancel", handler: API.cancelJob),
    ]

    var runner: JobService {
        get throws(StoreError) {
            guard let jobs else { throw StoreError(.notSupported, "this server takes no jobs: serve it from a mount (modelfs mount … --web)") }
            return jobs
        }
    }

    /// The body is what `jobs/submit` takes: one JSON object with `model`, `version`, `dataset`
    /// (and `name`, `evaluate`), its other keys hyper-parameters; they may also come in `params`.
    func submitJob(_ call: Call) throws -> Answer {
        let user = try call.who
        let jobs = try runner
        // As the mount: a job runs as the user who asks, which only a server run by root or by them can do.
        guard user.uid == getuid() || getuid() == 0 else {
            throw StoreError(.accessDenied, "jobs run as the user who asks, and this server (uid \(getuid()), not root) cannot run them as \(user.name)")
        }
        let request = try JobRequest.parse(try API.flatRequest(call.body))
        let job = try acting(user) { () throws(StoreError) in
            try jobs.submit(request, kind: .train, owner: JobOwner(uid: user.uid, gid: user.gid))
        }
        return (.created, job)
    }

    /// `{"model": …, "params": {"epochs": 3}}` as `jobs/submit` takes it: `params`' keys beside
    /// the others (each once). Anything else is left to ``JobRequest/parse(_:)`` to judge.
    static func flatRequest(_ body: [UInt8]) throws(StoreError) -> [UInt8] {
        guard var fields = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
              let params = fields.removeValue(forKey: "params") else { return body }
        guard let params = params as? [String: Any] else { throw .invalid("params is an object of hyper-parameters") }
        for (key, value) in params {
            guard fields[key] == nil else { throw .invalid("\(key) is given twice (in params too)") }
            fields[key] = value
        }
        guard let flat = try? JSONSerialization.data(withJSONObject: fields) else { throw .invalid("the body is not a JSON object of this request") }
        return Array(flat)
    }

    func job(_ call: Call) throws(StoreError) -> Job {
        let name = call.parameter("job")
        guard let job = try port.job(JobID(name)) else { throw StoreError.notFound("no job \(Names.printable(name))") }
        return job
    }

    /// As `echo cancel > jobs/<id>/control`: the job's owner or root.
    func cancelJob(_ call: Call) throws -> Answer {
        let user = try call.who
        let job = try job(call)
        let owner = job.owner?.uid ?? getuid()
        guard user.uid == owner || user.uid == 0 else {
            throw StoreError(.accessDenied, "job \(job.id) is uid \(owner)'s: only they or root cancel it")
        }
        var jobs = try runner
        if job.executor != jobs.executor.name {
            // A job another node's executor runs (a Slurm job, from a local server): cancelled through that executor.
            let executor: any JobExecutor = job.executor == "slurm" ? SlurmExecutor() : LocalExecutor()
            jobs = JobService(registry: registry, executor: executor, configuration: .init(directory: jobs.configuration.directory, trainCommand: nil))
        }
        try acting(user) { () throws(StoreError) in try jobs.cancel(job.id) }
        return (.ok, try port.job(job.id) ?? job)
    }

    /// The log from byte `offset` (at most ``LogTail/piece``), `text/plain`, with `X-Log-Size`: the
    /// bytes so far. Its owner's and root's, as `jobs/<id>/log` is (0400) on the mount.
    func jobLog(_ call: Call) throws -> Answer {
        let job = try job(call)
        // A job from before owners were recorded is the mount's user's, as its log file is (0400).
        let owner = job.owner?.uid ?? getuid()
        guard let user = call.user else {
            throw WebError.unauthorized("the log of job \(job.id) is its owner's to read: it needs a user")
        }
        guard user.uid == owner || user.uid == 0 else {
            throw StoreError(.accessDenied, "\(user.name) may not read the log of job \(job.id): it is uid \(owner)'s")
        }
        let offset = try LogTail.offset(call.query)
        let jobs = try runner
        let size = jobs.logSize(of: job.id)
        let bytes = offset < size ? jobs.readLog(of: job, offset: offset, size: Int(min(size - offset, Int64(LogTail.piece)))) : []
        return (.ok, LogTail(bytes: bytes, size: size))
    }
}
