import Foundation
import Glibc
import Jobs
import Logging
import ModelStore
import ReadPath

/// `jobs/`: the `submit` and `evaluate` control files and one directory per job (spec.json,
/// status, log, control).
/// The protocol of requests is here and nowhere else: see docs/JOBS.md.
final class JobsProvider: NamespaceProvider {
    unowned let namespace: Namespace
    let parts: Set<TreePart> = [.jobs]

    init(namespace: Namespace) { self.namespace = namespace }

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        let missing = StoreError.notFound("no such file: \(Names.printable(name))")
        switch parent {
        case .jobsDir:
            if name == "submit" { return .submit }
            if name == "evaluate" { return .evaluate }
            guard let job = try store.job(JobID(name)) else { throw missing }
            return .job(job.number)
        case .job(let number):
            guard let file = JobFile(rawValue: name), try store.job(number: number) != nil else { throw missing }
            return .jobFile(number, file)
        default:
            throw StoreError(.notDirectory, "\(Names.printable(name)): the parent is a file, not a directory")
        }
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        switch node {
        case .submit, .evaluate:
            return namespace.file(node, size: 0, modified: namespace.mountTime, permissions: 0o666)
        case .job(let number):
            guard let job = try store.job(number: number) else { throw .notFound("job \(number) is gone") }
            return namespace.directory(node, modified: job.created.timeIntervalSince1970, owner: jobOwnership(job, mode: 0o755))
        case .jobFile(let number, let which):
            guard let job = try store.job(number: number) else { throw .notFound("job \(number) is gone") }
            let modified = (job.finished ?? job.started ?? job.created).timeIntervalSince1970
            switch which {
            case .control:
                var a = namespace.file(node, size: 0, modified: modified, permissions: 0o200)
                if let o = job.owner { a.uid = o.uid; a.gid = o.gid }
                return a
            case .log:
                // The log may say anything the command printed: its owner's (and root's) to read.
                var a = namespace.file(node, size: namespace.jobs?.logSize(of: job.id) ?? 0, modified: Date().timeIntervalSince1970,
                                       permissions: 0o400)
                if let o = job.owner { a.uid = o.uid; a.gid = o.gid }
                return a
            case .spec, .status:
                // The job's, as its directory is; readable by whoever may read the job (the
                // directory is 0755: anyone sees what was asked and where it is).
                var a = namespace.file(node, size: Int64(content(job, which).count), modified: modified)
                if let o = job.owner { a.uid = o.uid; a.gid = o.gid }
                return a
            }
        default:
            return namespace.directory(node)
        }
    }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] {
        switch node {
        case .jobsDir:
            var out = [DirectoryEntry(name: "submit", attributes: try attributes(of: .submit)),
                       DirectoryEntry(name: "evaluate", attributes: try attributes(of: .evaluate))]
            for job in try store.jobs() {
                out.append(DirectoryEntry(name: job.id.rawValue, attributes: namespace.directory(.job(job.number), modified: job.created.timeIntervalSince1970,
                                                                                        owner: jobOwnership(job, mode: 0o755))))
            }
            return out
        case .job(let number):
            var out: [DirectoryEntry] = []
            for file in JobFile.allCases { out.append(DirectoryEntry(name: file.rawValue, attributes: try attributes(of: .jobFile(number, file)))) }
            return out
        default:
            throw StoreError(.notDirectory, "not a directory")
        }
    }

    func parent(of node: Node) throws(StoreError) -> Node {
        switch node {
        case .jobsDir: return .root
        case .jobFile(let number, _): return .job(number)
        default: return .jobsDir
        }
    }

    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        switch node {
        case .submit, .evaluate:
            guard namespace.jobs != nil else {
                throw StoreError(.notSupported, "this mount runs no jobs: mount with --train-command or --eval-command")
            }
            // A job runs as the user who asks. A mount run by root can become anyone; any other
            // mount runs jobs for its own user only.
            guard ctx.uid == namespace.uid || namespace.uid == 0 else {
                namespace.logger.warning("job request from uid \(ctx.uid) (pid \(ctx.pid)) refused: this mount runs as uid \(namespace.uid), not root")
                throw StoreError(.accessDenied, "jobs run as the user who asks, and this mount (uid \(namespace.uid), not root) cannot run them as uid \(ctx.uid)")
            }
            let kind: JobKind = node == .evaluate ? .evaluate : .train, owner = JobOwner(uid: ctx.uid, gid: ctx.gid)
            return Opened(file: SubmissionFile(what: "job", logger: namespace.logger) { [self] (request) throws(StoreError) in
                try submit(request, kind: kind, owner: owner)
            }, directIO: true)
        case .jobFile(let number, let which):
            guard let job = try store.job(number: number) else { throw .notFound("job \(number) is gone") }
            switch which {
            case .control:
                guard flags.wantsWrite else { throw StoreError(.notPermitted, "control is written to: echo cancel > control") }
                // The kernel checks the 0200 first (EACCES); the same answer without it.
                let owner = job.owner?.uid ?? namespace.uid
                guard ctx.uid == owner || ctx.uid == 0 else {
                    throw StoreError(.accessDenied, "job \(job.id) is uid \(owner)'s: only they or root cancel it")
                }
                return Opened(file: ControlFile(provider: self, job: job.id), directIO: true)
            case .log:
                if flags.wantsWrite { throw StoreError(.notPermitted, "the log is written by the job") }
                guard let jobs = namespace.jobs else { return Opened(file: ContentFile([]), directIO: true) }
                return Opened(file: LogFile(jobs: jobs, job: job), directIO: true)
            case .spec, .status:
                if flags.wantsWrite { throw StoreError(.notPermitted, "\(which.rawValue) is read-only") }
                return Opened(file: ContentFile(content(job, which)), directIO: true)
            }
        default:
            throw StoreError(.isDirectory, "is a directory")
        }
    }

    /// Requests are written to `submit`, `evaluate` and a job's `control`; nothing else here.
    func acceptsWrites(_ node: Node) throws(StoreError) -> Bool {
        switch node {
        case .submit, .evaluate, .jobFile(_, .control): return true
        default: return false
        }
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .submit: return "jobs/submit"
        case .evaluate: return "jobs/evaluate"
        case .job(let number): return "jobs/" + (((try? store.job(number: number)) ?? nil)?.id.rawValue ?? "\(number)")
        case .jobFile(let number, let file): return describe(.job(number)) + "/" + file.rawValue
        default: return "jobs"
        }
    }

    func content(_ job: Job, _ which: JobFile) -> [UInt8] {
        switch which {
        case .status:
            return Array((job.status.rawValue + "\n").utf8)
        case .spec:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            return Array((try? encoder.encode(job)) ?? Data()) + [0x0A]
        default:
            return []
        }
    }

    /// Submits a whole request; its answer (the job's id, or the reason) is what a read returns.
    func submit(_ request: [UInt8], kind: JobKind, owner: JobOwner) throws(StoreError) -> String {
        guard let jobs = namespace.jobs else { throw StoreError(.notSupported, "this mount runs no jobs") }
        return try jobs.submit(try JobRequest.parse(request), kind: kind, owner: owner).id.rawValue
    }

    /// A job's directory as `ls -l` shows it: its owner's.
    func jobOwnership(_ job: Job, mode: UInt32) -> Ownership? {
        job.owner.map { Ownership(uid: $0.uid, gid: $0.gid, mode: mode) }
    }

    func cancel(_ job: JobID) throws(StoreError) { try namespace.jobs?.cancel(job) }
}

/// One open of a control file that takes requests (`jobs/submit`, `jobs/evaluate`,
/// `services/submit`): the request as it arrives, and the answer a read returns. A complete
/// request (ending in a newline, or a whole JSON object) is submitted at once, so a bad one fails
/// this very `write()`; one without a final newline is taken when the file is closed.
final class SubmissionFile: OpenFile {
    let what: String
    let logger: Logger
    /// Submits the request's bytes; returns the name of what it started.
    let submit: @Sendable ([UInt8]) throws(StoreError) -> String
    private struct State { var request: [UInt8] = []; var answer: [UInt8] = []; var done = false }
    private let state = Locked(State())

    init(what: String, logger: Logger, submit: @escaping @Sendable ([UInt8]) throws(StoreError) -> String) {
        self.what = what; self.logger = logger; self.submit = submit
    }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply {
        .bytes(ContentFile.slice(state.withLock { $0.answer }, offset, size))
    }

    func write(offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext) throws(StoreError) -> Int {
        try state.withLock { (s) throws(StoreError) -> Int in
            guard !s.done else { throw StoreError(.invalidArgument, "one request per open: open the file again") }
            s.request.append(contentsOf: bytes)
            if s.request.count > JobRequest.maxBytes {
                s.done = true
                let error = StoreError(.invalidArgument, "the request is over \(JobRequest.maxBytes) bytes")
                s.answer = Array("error: \(error.message)\n".utf8)
                throw error
            }
            let text = String(decoding: s.request, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            let complete = s.request.last == 0x0A
                || (text.hasPrefix("{") && (try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil)
            if complete { try process(&s, ctx) }
            return bytes.count
        }
    }

    func flush(_ ctx: RequestContext) throws(StoreError) {
        try state.withLock { (s) throws(StoreError) in
            if !s.done && !s.request.isEmpty { try process(&s, ctx) }
        }
    }

    /// Submits on behalf of whoever wrote (or closed) the request: the audit trail names them.
    private func process(_ s: inout State, _ ctx: RequestContext) throws(StoreError) {
        s.done = true
        do throws(StoreError) {
            let request = s.request
            let name = try Actor.acting(ctx.actor) { () throws(StoreError) in try submit(request) }
            s.answer = Array((name + "\n").utf8)
        } catch {
            s.answer = Array("error: \(error.message)\n".utf8)
            logger.info("\(what) request refused: \(error.message)")
            throw error
        }
    }
}

/// `jobs/<id>/control`: `echo cancel > control`.
final class ControlFile: OpenFile {
    unowned let provider: JobsProvider
    let job: JobID
    init(provider: JobsProvider, job: JobID) { self.provider = provider; self.job = job }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply { .bytes([]) }

    func write(offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext) throws(StoreError) -> Int {
        let word = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard word == "cancel" else { throw StoreError(.invalidArgument, "write cancel to control") }
        try provider.cancel(job)
        return bytes.count
    }
}

/// `jobs/<id>/log`, read live as the job writes it (see ``JobService/readLog(of:offset:size:)``).
final class LogFile: OpenFile {
    let jobs: JobService
    let job: Job
    init(jobs: JobService, job: Job) { self.jobs = jobs; self.job = job }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply {
        .bytes(jobs.readLog(of: job, offset: offset, size: size))
    }
}
