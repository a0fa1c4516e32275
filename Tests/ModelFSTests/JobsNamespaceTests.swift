import Foundation
import Glibc
import Testing
import ModelStore
import Catalog
import Registry
import ReadPath
import Jobs
import ModelFS

/// Polls `condition` until it holds or a generous deadline passes (a safety net, not a measurement).
private func jobsEventually(_ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return try condition()
}

/// A ``FileSystem`` with a ``JobService`` on the local executor (driven by `tick()`, no thread),
/// over model `m` (ready `v1.safetensors`) and dataset `qa.jsonl` (ready).
private final class JobsFSEnv: @unchecked Sendable {
    let dir: String
    let catalog: Catalog
    let registry: Registry
    let jobs: JobService
    let fs: FileSystem
    static let submitInode: UInt64 = 6

    init(command: String? = "true", eval: String? = nil) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-fsjobs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        catalog = try Catalog(path: dir + "/catalog.sqlite")
        registry = Registry(catalog: catalog, objects: MemoryObjectStore(), uploadConcurrency: 2)
        jobs = JobService(registry: registry, executor: LocalExecutor(),
                          configuration: JobService.Configuration(directory: dir + "/jobs", trainCommand: command, evalCommand: eval))
        fs = FileSystem(registry: registry, cache: BlockCache(), jobs: jobs)
        try registry.createModel("m")
        let v = try registry.beginVersion(model: "m", fileName: "v1.safetensors")
        try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try v.write($0) }
        _ = try v.finishVersion()
        let d = try registry.beginDataset(fileName: "qa.jsonl")
        try bytes("{\"text\": \"a\"}\n").withUnsafeBytes { try d.write($0) }
        _ = try d.finish()
    }

    deinit {
        for job in (try? catalog.jobs()) ?? [] {
            if let eid = job.executorID, let pid = pid_t(eid), pid > 0, job.status == .running || job.status == .cancelled {
                kill(-pid, SIGKILL)
                var status: Int32 = 0
                _ = waitpid(pid, &status, 0)
            }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    func inode(_ path: String) throws -> UInt64 {
        var inode = rootInode
        for component in path.split(separator: "/") {
            inode = try fs.lookup(parent: inode, name: bytes(String(component))).inode
        }
        return inode
    }

    static let evaluateInode: UInt64 = 7

    func openSubmit(_ inode: UInt64 = JobsFSEnv.submitInode) throws -> UInt64 { try fs.open(inode, flags: OpenFlags(O_WRONLY)).handle }

    func write(_ handle: UInt64, _ text: String, at offset: Int64 = 0) throws(StoreError) -> Int {
        try bytes(text).withUnsafeBytes { b in Result { () throws(StoreError) in try fs.write(handle, offset: offset, bytes: b) } }.get()
    }

    func readText(_ handle: UInt64) throws -> String {
        var out: [UInt8] = []
        while true {
            let got = try fs.read(handle, offset: Int64(out.count), size: 4096)
            out += got
            if got.count < 4096 { return String(decoding: out, as: UTF8.self) }
        }
    }

    /// `cat path`.
    func cat(_ path: String) throws -> String {
        let handle = try fs.open(try inode(path), flags: OpenFlags(O_RDONLY)).handle
        defer { try? fs.release(handle) }
        return try readText(handle)
    }

    /// One whole submission as a shell does it: open, write, close; returns the answer read back.
    func submit(_ request: String, to inode: UInt64 = JobsFSEnv.submitInode) throws -> String {
        let handle = try openSubmit(inode)
        defer { try? fs.release(handle) }
        _ = try write(handle, request)
        try fs.flush(handle, pid: 1)
        return try readText(handle)
    }

    func job(_ id: String) throws -> Job { try #require(try catalog.job(id: JobID(id))) }

    @discardableResult
    func drive(_ id: String, until condition: (Job) -> Bool) throws -> Job {
        _ = try jobsEventually {
            // A test runner's worker threads block SIGTERM; jobs started here would inherit that.
            var term = sigset_t(), old = sigset_t()
            sigemptyset(&term)
            sigaddset(&term, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &term, &old)
            defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
            try jobs.tick()
            return condition(try job(id))
        }
        let now = try job(id)
        #expect(condition(now), "job \(id) is \(now.status.rawValue)")
        return now
    }
}

@Suite("ModelFS: jobs/")
struct JobsNamespaceTests {
    @Test func anEvaluationRequestRunsTheEvalCommandAndItsMetricsAreTheVersionsXattrs() throws {
        let env = try JobsFSEnv(command: nil, eval: #"printf '{"accuracy": 0.9125, "loss": 0.25}' > "$MODELFS_METRICS_FILE""#)
        #expect(try env.inode("jobs/evaluate") == JobsFSEnv.evaluateInode)
        let version = try env.inode("models/m/v1.safetensors")
        #expect(try env.fs.listxattr(version).allSatisfy { !$0.contains("metric") }, "no metrics before an evaluation")
        let answer = try env.submit("model=m version=v1 dataset=qa\n", to: JobsFSEnv.evaluateInode)
        #expect(answer == "m-v1-eval-1\n")
        // The training control file refuses: this mount has no training command.
        #expect(throws: StoreError.self) { try env.submit("model=m version=v1 dataset=qa\n") }
        let job = try env.drive("m-v1-eval-1") { !$0.status.isActive }
        #expect(job.status == .succeeded, "\(job.error ?? "")")
        #expect(try env.cat("jobs/m-v1-eval-1/spec.json").contains(#""kind" : "evaluate""#))
        func xattr(_ name: String) throws -> String { String(decoding: try env.fs.getxattr(version, name: "user.modelfs." + name), as: UTF8.self) }
        #expect(try xattr("metrics") == #"{"accuracy":0.9125,"loss":0.25}"#)
        #expect(try xattr("metric.accuracy") == "0.9125" && xattr("metric.loss") == "0.25")
        #expect(try xattr("metrics_dataset") == "qa" && xattr("metrics_job") == "m-v1-eval-1")
        #expect(try env.fs.listxattr(version).contains("user.modelfs.metric.accuracy"))
        #expect(throws: StoreError.self) { try env.fs.setxattr(version, name: "user.modelfs.metric.accuracy", value: bytes("1")) }
    }

    @Test func jobsListsSubmitAndJobIds() throws {
        let env = try JobsFSEnv()
        let jobsDir = try env.inode("jobs")
        #expect(try env.fs.readdir(jobsDir).map(\.name) == [".", "..", "submit", "evaluate"])
        #expect(try env.inode("jobs/submit") == JobsFSEnv.submitInode)
        #expect(try env.submit("model=m version=v1 dataset=qa\n") == "m-v1-ft-1\n")
        #expect(try env.submit(#"{"model": "m", "version": "v1", "dataset": "qa", "name": "named"}"#) == "named\n")
        let entries = try env.fs.readdir(jobsDir)
        #expect(entries.map(\.name) == [".", "..", "submit", "evaluate", "m-v1-ft-1", "named"])
        #expect(entries.dropFirst(4).allSatisfy { $0.attributes.isDirectory })
        #expect(try env.fs.lookup(parent: jobsDir, name: bytes("named")).isDirectory)
        let missing = #expect(throws: StoreError.self) { try env.fs.lookup(parent: jobsDir, name: bytes("no-such-job")) }
        #expect(missing?.code == .notFound)
    }

    @Test func aGoodRequestAnswersItsId() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        let request = "model=m version=v1 dataset=qa epochs=3 note=\"two words\"\n"
        #expect(try env.write(handle, request) == request.utf8.count)
        #expect(try env.readText(handle) == "m-v1-ft-1\n")
        let job = try env.job("m-v1-ft-1")
        #expect(job.status == .queued && job.params == ["epochs": "3", "note": "two words"])
        // Closing does not submit it again.
        try env.fs.flush(handle, pid: 1)
        try env.fs.release(handle)
        #expect(try env.catalog.jobs().count == 1)
    }

    @Test func aRequestMayArriveInSeveralWrites() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        // A shell's close of the descriptor it duplicated comes before any write: nothing happens.
        try env.fs.flush(handle, pid: 1)
        #expect(try env.write(handle, "model=m ") == 8)
        #expect(try env.readText(handle) == "")
        #expect(try env.catalog.jobs().isEmpty)
        #expect(try env.write(handle, "version=v1 dataset=qa\n", at: 8) == 22)
        #expect(try env.readText(handle) == "m-v1-ft-1\n")
    }

    @Test func aJSONObjectIsTakenAsSoonAsItIsComplete() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        _ = try env.write(handle, #"{"model": "m", "version": "v1", "#)
        #expect(try env.readText(handle) == "")
        _ = try env.write(handle, #""dataset": "qa", "epochs": 2}"#, at: 31)
        #expect(try env.readText(handle) == "m-v1-ft-1\n")
        #expect(try env.job("m-v1-ft-1").params == ["epochs": "2"])
    }

    @Test(arguments: [
        ("model=nope version=v1 dataset=qa\n", StoreError.Code.notFound, "nope"),
        ("model=m version=v7 dataset=qa\n", .notFound, "v7"),
        ("model=m version=v1 dataset=gone\n", .notFound, "gone"),
        ("model=m version=v1 dataset=wip\n", .busy, "wip"),
        ("model=m version=v1\n", .invalidArgument, "dataset"),
        ("model=m version=v1 dataset=qa bad$key=1\n", .invalidArgument, "bad$key"),
        ("model=m version=v1 dataset=qa name=.x\n", .invalidArgument, "job name"),
        (#"{"model": "m", "version": "v1", "dataset": "qa", "x": [1]}"#, .invalidArgument, "x"),
    ])
    func aBadRequestFailsTheWriteAndExplainsOnRead(_ request: String, _ code: StoreError.Code, _ named: String) throws {
        let env = try JobsFSEnv()
        let wip = try env.registry.beginDataset(fileName: "wip.csv")
        try bytes("a,b\n").withUnsafeBytes { try wip.write($0) }
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        let error = #expect(throws: StoreError.self) { try env.write(handle, request) }
        #expect(error?.code == code, "\(error?.message ?? "")")
        let answer = try env.readText(handle)
        #expect(answer.hasPrefix("error: ") && answer.hasSuffix("\n"), "\(answer)")
        #expect(answer.contains(named), "\(answer)")
        #expect(answer == "error: \(error?.message ?? "")\n")
        #expect(try env.catalog.jobs().isEmpty)
        // The close reports nothing more, and submits nothing.
        try env.fs.flush(handle, pid: 1)
        #expect(try env.catalog.jobs().isEmpty)
    }

    @Test func aRequestWithoutAFinalNewlineIsTakenAtClose() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        #expect(try env.write(handle, "model=m version=v1 dataset=qa") == 29)
        #expect(try env.readText(handle) == "")
        #expect(try env.catalog.jobs().isEmpty)
        try env.fs.flush(handle, pid: 1)
        #expect(try env.readText(handle) == "m-v1-ft-1\n")
        #expect(try env.job("m-v1-ft-1").status == .queued)
    }

    @Test func aBadRequestWithoutAFinalNewlineFailsTheClose() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        #expect(try env.write(handle, "model=m version=v1 dataset=nope") == 31)
        let error = #expect(throws: StoreError.self) { try env.fs.flush(handle, pid: 1) }
        #expect(error?.code == .notFound)
        #expect(try env.readText(handle).hasPrefix("error: "))
        #expect(try env.catalog.jobs().isEmpty)
    }

    @Test func oneRequestPerOpen() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        _ = try env.write(handle, "model=m version=v1 dataset=qa\n")
        let error = #expect(throws: StoreError.self) { try env.write(handle, "model=m version=v1 dataset=qa\n", at: 30) }
        #expect(error?.code == .invalidArgument)
        #expect(try env.readText(handle) == "m-v1-ft-1\n", "the answer is still the first request's")
        #expect(try env.catalog.jobs().map(\.id) == ["m-v1-ft-1"])
        // Same after a refused request.
        let other = try env.openSubmit()
        defer { try? env.fs.release(other) }
        #expect(throws: StoreError.self) { try env.write(other, "model=nope version=v1 dataset=qa\n") }
        let again = #expect(throws: StoreError.self) { try env.write(other, "model=m version=v1 dataset=qa\n", at: 33) }
        #expect(again?.code == .invalidArgument)
        #expect(try env.catalog.jobs().count == 1)
    }

    @Test func anOversizedRequestIsRefused() throws {
        let env = try JobsFSEnv()
        let handle = try env.openSubmit()
        defer { try? env.fs.release(handle) }
        let chunk = "model=m version=v1 dataset=qa note=" + String(repeating: "x", count: 40_000)
        _ = try env.write(handle, chunk)
        let error = #expect(throws: StoreError.self) { try env.write(handle, String(repeating: "y", count: 40_000) + "\n", at: Int64(chunk.utf8.count)) }
        #expect(error?.code == .invalidArgument)
        #expect(try env.readText(handle).hasPrefix("error: "))
        #expect(try env.catalog.jobs().isEmpty)
    }

    @Test func aRequestIsItsWritersJobAndOnlyTheyOrRootCancelIt() throws {
        let env = try JobsFSEnv()
        let alice = RequestContext(uid: 5001, gid: 5002, pid: getpid())
        // Her model: a training job's checkpoints become versions of it.
        try env.registry.changeOwnership(.model(try env.registry.version("m", "v1").0.id), mode: nil, uid: 5001, gid: 5002,
                                         defaultOwner: Ownership(uid: 0, gid: 0, mode: 0o755))
        let handle = try env.fs.open(JobsFSEnv.submitInode, flags: OpenFlags(O_RDWR), alice).handle
        _ = try env.write(handle, "model=m version=v1 dataset=qa\n")
        let id = try env.readText(handle).trimmingCharacters(in: .newlines)
        try env.fs.release(handle)
        #expect(try env.job(id).owner == JobOwner(uid: 5001, gid: 5002))
        let dir = try env.fs.getattr(try env.inode("jobs/" + id))
        #expect(dir.uid == 5001 && dir.gid == 5002, "the job's directory shows its owner")
        let log = try env.fs.getattr(try env.inode("jobs/\(id)/log"))
        #expect(log.uid == 5001 && log.permissions == 0o400, "what the command prints is its owner's to read")
        let spec = try env.fs.getattr(try env.inode("jobs/\(id)/spec.json"))
        #expect(spec.uid == 5001 && spec.permissions == 0o444, "the job's, readable by whoever may read the job")
        let control = try env.inode("jobs/\(id)/control")
        expectStoreError(.accessDenied) { try env.fs.open(control, flags: OpenFlags(O_WRONLY), RequestContext(uid: 5003, gid: 5003, pid: getpid())) }
        try env.fs.release(try env.fs.open(control, flags: OpenFlags(O_WRONLY), alice).handle)
        try env.fs.release(try env.fs.open(control, flags: OpenFlags(O_WRONLY)).handle)  // root
    }

    @Test func withoutAJobServiceSubmitIsNotSupported() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-fsjobs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = Registry(catalog: try Catalog(path: dir + "/catalog.sqlite"), objects: MemoryObjectStore())
        let fs = FileSystem(registry: registry, cache: BlockCache())
        let error = #expect(throws: StoreError.self) { try fs.open(JobsFSEnv.submitInode, flags: OpenFlags(O_WRONLY)) }
        #expect(error?.code == .notSupported)
    }

    @Test func aJobDirectoryHasSpecStatusLogAndControl() throws {
        let env = try JobsFSEnv(command: #"printf x > "$MODELFS_OUTPUT_DIR/c.safetensors""#)
        let id = try env.submit("model=m version=v1 dataset=qa epochs=3\n").trimmingCharacters(in: .newlines)
        let dirInode = try env.inode("jobs/" + id)
        #expect(try env.fs.readdir(dirInode).map(\.name) == [".", "..", "spec.json", "status", "log", "control"])
        #expect(try env.cat("jobs/\(id)/status") == "queued\n")
        let specText = try env.cat("jobs/\(id)/spec.json")
        let spec = try #require(try JSONSerialization.jsonObject(with: Data(specText.utf8)) as? [String: Any])
        #expect(spec["id"] as? String == id && spec["model"] as? String == "m" && spec["dataset"] as? String == "qa")
        #expect(spec["params"] as? [String: String] == ["epochs": "3"])
        #expect(try env.fs.getattr(try env.inode("jobs/\(id)/status")).size == 7)
        // Status follows the job.
        let job = try env.drive(id) { !$0.status.isActive }
        #expect(job.status == .succeeded)
        #expect(try env.cat("jobs/\(id)/status") == job.status.rawValue + "\n")
        #expect(try env.fs.getattr(try env.inode("jobs/\(id)/status")).size == Int64(job.status.rawValue.utf8.count + 1))
        #expect(try env.cat("jobs/\(id)/spec.json").contains("v2.safetensors"), "spec.json shows the outputs")
        // The job's files are read-only, except control, which is write-only.
        for name in ["status", "spec.json", "log"] {
            let refused = #expect(throws: StoreError.self) { try env.fs.open(try env.inode("jobs/\(id)/\(name)"), flags: OpenFlags(O_WRONLY)) }
            #expect(refused?.code == .notPermitted, "\(name)")
        }
        let readControl = #expect(throws: StoreError.self) { try env.fs.open(try env.inode("jobs/\(id)/control"), flags: OpenFlags(O_RDONLY)) }
        #expect(readControl?.code == .notPermitted)
    }

    @Test func writingCancelToControlCancels() throws {
        let env = try JobsFSEnv(command: "sleep 30")
        let id = try env.submit("model=m version=v1 dataset=qa\n").trimmingCharacters(in: .newlines)
        let job = try env.drive(id) { $0.status == .running && $0.executorID != nil }
        #expect(try env.cat("jobs/\(id)/status") == "running\n")
        let control = try env.fs.open(try env.inode("jobs/\(id)/control"), flags: OpenFlags(O_WRONLY | O_TRUNC))
        defer { try? env.fs.release(control.handle) }
        // Anything but cancel is refused and changes nothing.
        for word in ["stop\n", "cancel now\n", "CANCEL\n", ""] {
            let error = #expect(throws: StoreError.self) { try env.write(control.handle, word) }
            #expect(error?.code == .invalidArgument, "\(word)")
        }
        #expect(try env.job(id).status == .running)
        #expect(try env.write(control.handle, "cancel\n") == 7)
        #expect(try env.job(id).status == .cancelled)
        #expect(try env.cat("jobs/\(id)/status") == "cancelled\n")
        if let pid = pid_t(job.executorID ?? "") {
            #expect(jobsEventually { kill(-pid, 0) == -1 || (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z") ?? true },
                    "the job's process is stopped")
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
        // A second cancel: the job is no longer active.
        let again = #expect(throws: StoreError.self) { try env.write(control.handle, "cancel") }
        #expect(again?.code == .invalidArgument)
    }

    @Test func theLogIsReadableAndGrows() throws {
        let env = try JobsFSEnv(command: #"echo first line; while [ ! -e "$MODELFS_JOB_DIR/go" ]; do sleep 0.05; done; echo second line"#)
        let id = try env.submit("model=m version=v1 dataset=qa\n").trimmingCharacters(in: .newlines)
        #expect(try env.cat("jobs/\(id)/log") == "", "an empty log before the job starts")
        try env.drive(id) { $0.status == .running }
        #expect(try jobsEventually { try env.cat("jobs/\(id)/log").contains("first line\n") })
        let early = try env.cat("jobs/\(id)/log")
        #expect(early.contains("modelfs: job started"))
        #expect(!early.contains("second line"))
        #expect(try env.fs.getattr(try env.inode("jobs/\(id)/log")).size == Int64(early.utf8.count))
        // One open handle sees the log grow.
        let handle = try env.fs.open(try env.inode("jobs/\(id)/log"), flags: OpenFlags(O_RDONLY)).handle
        defer { try? env.fs.release(handle) }
        #expect(try env.readText(handle) == early)
        #expect(FileManager.default.createFile(atPath: env.jobs.directory(of: JobID(id)) + "/go", contents: nil))
        #expect(try env.drive(id) { !$0.status.isActive }.status == .succeeded)
        let late = try env.readText(handle)
        #expect(late.hasPrefix(early) && late.count > early.count)
        #expect(late.contains("second line\n") && late.contains("modelfs: job succeeded"), "\(late)")
        #expect(try env.fs.getattr(try env.inode("jobs/\(id)/log")).size == Int64(late.utf8.count))
        let tail = try env.fs.read(handle, offset: Int64(early.utf8.count), size: 4096)
        #expect(String(decoding: tail, as: UTF8.self) == String(late.dropFirst(early.count)))
    }
}
