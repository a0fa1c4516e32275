import Foundation
import Testing
import ModelStore
import Catalog
import Registry
@testable import Jobs

/// Writes `json` to `$MODELFS_METRICS_FILE`, as an evaluator does.
func writeMetrics(_ json: String) -> String { "printf '%s' '\(json)' > \"$MODELFS_METRICS_FILE\"" }

@Suite("JobService: evaluation jobs")
struct EvaluationJobTests {
    @Test func anEvaluationJobStoresItsMetricsOnTheVersion() throws {
        let env = try JobsEnv()
        let s = env.service(nil, eval: #"echo "on $MODELFS_DATASET"; "# + writeMetrics(#"{"accuracy": 0.75, "loss": 0.5, "records": 2}"#))
        let job = try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate)
        #expect(job.id == "m-v1-eval-1" && job.kind == .evaluate)
        let done = try env.finish(s, job.id)
        #expect(done.status == .succeeded, "\(done.error ?? "")")
        #expect(done.outputs.isEmpty, "an evaluation makes no version")
        let (_, v1) = try env.registry.version("m", "v1")
        let e = try #require(try env.catalog.evaluations(versionID: v1.id).first)
        #expect(e.dataset == "qa" && e.job == job.id.rawValue && e.metrics == ["accuracy": 0.75, "loss": 0.5, "records": 2])
        let log = env.text(s.logPath(of: job.id))
        #expect(log.contains("on qa") && log.contains("metrics of m/v1 on qa: accuracy=0.75 loss=0.5 records=2"), "\(log)")
        #expect(try env.versionNames() == ["v1.safetensors"])
    }

    @Test func aNewEvaluationOnTheSameDatasetReplacesTheOldOneAndOthersStay() throws {
        let env = try JobsEnv()
        try env.putDataset("other.jsonl", JobsEnv.datasetBytes)
        let first = env.service(nil, eval: writeMetrics(#"{"accuracy": 0.5}"#))
        try env.finish(first, try first.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate).id)
        let second = env.service(nil, eval: writeMetrics(#"{"accuracy": 0.9}"#))
        try env.finish(second, try second.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate).id)
        try env.finish(second, try second.submit(JobRequest(model: "m", version: "v1", dataset: "other"), kind: .evaluate).id)
        let (_, v1) = try env.registry.version("m", "v1")
        let all = try env.catalog.evaluations(versionID: v1.id)
        #expect(all.map(\.dataset) == ["qa", "other"])
        #expect(all.map(\.metrics) == [["accuracy": 0.9], ["accuracy": 0.9]])
        #expect(all[0].job == "m-v1-eval-2")
    }

    @Test(arguments: [
        ("", "wrote no metrics"),
        (writeMetrics("not json"), "not one flat JSON object"),
        (writeMetrics(#"{"accuracy": "0.9"}"#), "not one flat JSON object"),
        (writeMetrics(#"{"accuracy": true}"#), "not one flat JSON object"),
        (writeMetrics(#"{"nested": {"a": 1}}"#), "not one flat JSON object"),
        (writeMetrics("{}"), "names no metric"),
        (writeMetrics(#"{"bad name": 1}"#), "not a metric name"),
        (#"ln -s /etc/passwd "$MODELFS_METRICS_FILE""#, "metrics.json is a symbolic link"),
        (#"mkfifo "$MODELFS_METRICS_FILE""#, "metrics.json is not a regular file"),
        (writeMetrics(#"{"..": 1}"#), "not a metric name"),
    ])
    func metricsThatAreNotAFlatObjectOfNumbersFailTheJob(command: String, reason: String) throws {
        let env = try JobsEnv()
        let s = env.service(nil, eval: command.isEmpty ? "true" : command)
        let job = try env.finish(s, try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate).id)
        #expect(job.status == .failed)
        #expect(job.error?.contains("metrics not stored") == true && job.error?.contains(reason) == true, "\(job.error ?? "")")
        #expect(try env.catalog.evaluations(versionID: try env.registry.version("m", "v1").1.id).isEmpty)
    }

    @Test func evaluationNeedsAnEvalCommandAndTrainingATrainCommand() throws {
        let env = try JobsEnv()
        let trainOnly = env.service("true")
        let e1 = storeError { try trainOnly.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate) }
        #expect(e1?.code == .invalidArgument && e1?.message.contains("--eval-command") == true, "\(e1?.message ?? "")")
        let e2 = storeError { try trainOnly.submit(JobRequest(model: "m", version: "v1", dataset: "qa", evaluate: "qa")) }
        #expect(e2?.code == .invalidArgument && e2?.message.contains("--eval-command") == true, "\(e2?.message ?? "")")
        let evalOnly = env.service(nil, eval: "true")
        let e3 = storeError { try evalOnly.submit(JobRequest(model: "m", version: "v1", dataset: "qa")) }
        #expect(e3?.code == .invalidArgument && e3?.message.contains("--train-command") == true, "\(e3?.message ?? "")")
        let both = env.service("true", eval: "true")
        let e4 = storeError { try both.submit(JobRequest(model: "m", version: "v1", dataset: "qa", evaluate: "qa"), kind: .evaluate) }
        #expect(e4?.code == .invalidArgument, "an evaluation names its dataset once")
        let e5 = storeError { try both.submit(JobRequest(model: "m", version: "v1", dataset: "qa", evaluate: "nope")) }
        #expect(e5?.code == .notFound && e5?.message.contains("nope") == true, "\(e5?.message ?? "")")
        #expect(try env.catalog.jobs().isEmpty)
    }

    @Test func aTrainingJobAskingForItEvaluatesItsCheckpoint() throws {
        let env = try JobsEnv()
        try env.putDataset("held-out.jsonl", JobsEnv.datasetBytes)
        let s = env.service(writeCheckpoint, eval: #"[ "$MODELFS_VERSION" = v2 ] && "# + writeMetrics(#"{"accuracy": 0.8}"#))
        let train = try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa", evaluate: "held-out.jsonl"))
        #expect(train.evaluate == "held-out" && train.params["evaluate"] == nil, "not a hyper-parameter")
        let trained = try env.finish(s, train.id)
        #expect(trained.status == .succeeded && trained.outputs == ["v2.safetensors"], "\(trained.error ?? "")")
        let evalID = JobID(train.id.rawValue + "-eval")
        let evaluation = try env.finish(s, evalID)
        #expect(evaluation.kind == .evaluate && evaluation.version == "v2" && evaluation.dataset == "held-out")
        #expect(evaluation.status == .succeeded, "\(evaluation.error ?? "")")
        let (_, v2) = try env.registry.version("m", "v2")
        #expect(try env.catalog.evaluations(versionID: v2.id).map(\.metrics) == [["accuracy": 0.8]])
        #expect(env.text(s.logPath(of: train.id)).contains("submitted as job \(evalID)"))
    }

    @Test func evaluationsAreInTheVersionsEntryAndRecoverRestoresThem() throws {
        let env = try JobsEnv()
        let s = env.service(nil, eval: writeMetrics(#"{"accuracy": 0.625, "loss": 1e-05}"#))
        try env.finish(s, try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate).id)
        let (_, v1) = try env.registry.version("m", "v1")
        let entry = try VersionEntry.decode(try env.objects.get(Rules.versionEntryKey(objectKey: v1.objectKey), range: nil))
        #expect(entry.evaluations?.map(\.metrics) == [["accuracy": 0.625, "loss": 1e-05]])
        #expect(entry.evaluations?.first?.dataset == "qa" && entry.evaluations?.first?.job == "m-v1-eval-1")

        let fresh = try Catalog(path: env.dir + "/recovered.sqlite")
        let restored = Registry(catalog: fresh, objects: env.objects, uploadConcurrency: 1)
        _ = try restored.recoverFromManifests()
        let (_, back) = try restored.version("m", "v1")
        let e = try #require(try fresh.evaluations(versionID: back.id).first)
        #expect(e.metrics == ["accuracy": 0.625, "loss": 1e-05] && e.dataset == "qa" && e.job == "m-v1-eval-1")
    }

    @Test func aVersionsEvaluationsGoWithIt() throws {
        let env = try JobsEnv()
        let v2 = try env.putVersion("m", "v2.safetensors", JobsEnv.modelBytes)
        try env.registry.recordEvaluation(model: "m", version: "v2", dataset: "qa", job: nil, metrics: ["accuracy": 1])
        #expect(try env.catalog.evaluations(versionID: v2.id).count == 1)
        try env.registry.deleteVersion("m", "v2")
        #expect(try env.catalog.evaluations(versionID: v2.id).isEmpty)
    }
}

@Suite("Evaluation: metrics files")
struct MetricsParsingTests {
    @Test func numbersOfAnyJSONFormAreTaken() throws {
        #expect(try Evaluation.parseMetrics(bytes(#"{"a": 1, "b": -2.5, "c": 1e-3, "d.e_f-g": 0}"#))
                == ["a": 1, "b": -2.5, "c": 0.001, "d.e_f-g": 0])
    }

    @Test func textShowsIntegersWithoutAFractionAndOthersExactly() {
        #expect(Evaluation.text(80) == "80")
        #expect(Evaluation.text(0.9125) == "0.9125")
        #expect(Evaluation.text(1e-05) == "1e-05")
        #expect(Evaluation.json(["loss": 0.5, "accuracy": 1]) == #"{"accuracy":1,"loss":0.5}"#)
    }

    @Test func tooManyOrTooLargeIsRefused() {
        let many = "{" + (0...Evaluation.maxMetrics).map { "\"m\($0)\": 1" }.joined(separator: ",") + "}"
        #expect(throws: StoreError.self) { try Evaluation.parseMetrics(bytes(many)) }
        #expect(throws: StoreError.self) { try Evaluation.parseMetrics([UInt8](repeating: 0x20, count: Evaluation.maxBytes + 1)) }
        #expect(throws: StoreError.self) { try Evaluation.parseMetrics(bytes(#"{"\#(String(repeating: "x", count: 65))": 1}"#)) }
    }

    /// `.` and `..` would be `user.modelfs.metric..` and `user.modelfs.metric...`.
    @Test(arguments: [".", "..", "..."])
    func namesOfDotsOnlyAreRefused(name: String) {
        #expect(throws: StoreError.self) { try Evaluation.parseMetrics(bytes(#"{"\#(name)": 1}"#)) }
        #expect(throws: Never.self) { try Evaluation.parseMetrics(bytes(#"{"a.\#(name)": 1}"#)) }
    }
}

@Suite("JobService: jobs run as the user who asked")
struct JobOwnerTests {
    @Test func aJobOfAnotherUserRunsAsThemAndItsFilesAreTheirs() throws {
        try #require(getuid() == 0, "only root runs jobs as another user")
        let env = try JobsEnv()
        let s = env.service(#"id -u > uid.txt; id -g >> uid.txt; "# + writeCheckpoint)
        let nobody = JobOwner(uid: 65534, gid: 65534)
        // Their model: its checkpoints may become versions of it.
        try env.registry.changeOwnership(.model(try env.registry.version("m", "v1").0.id), mode: nil, uid: 65534, gid: 65534,
                                         defaultOwner: Ownership(uid: 0, gid: 0, mode: 0o755))
        let job = try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), owner: nobody)
        #expect(job.owner == nobody)
        let done = try env.finish(s, job.id)
        #expect(done.status == .succeeded, "\(done.error ?? "") \(env.text(s.logPath(of: job.id)))")
        #expect(env.text(s.workPath(of: job.id) + "/uid.txt") == "65534\n65534\n", "the command ran as the job's user")
        func owner(_ path: String) -> (uid_t, mode_t) {
            var st = stat()
            return lstat(path, &st) == 0 ? (st.st_uid, st.st_mode & 0o7777) : (9999, 0)
        }
        let dir = s.directory(of: job.id)
        #expect(owner(dir) == (0, 0o711), "the job's directory is the mount's: its user replaces nothing in it")
        #expect(owner(dir + "/log") == (0, 0o600) && owner(dir + "/run.sh") == (0, 0o644))
        for path in [dir + "/output", dir + "/work"] { #expect(owner(path) == (65534, 0o700), "\(path): theirs, and private") }
        #expect(try env.catalog.job(id: job.id)?.owner == nobody, "kept in the catalog")
        #expect(done.outputs == ["v2.safetensors"], "its checkpoint became a version")
        #expect(try env.registry.version("m", "v2").1.owner?.uid == 65534, "… of theirs")
        let audit = try env.catalog.audit(model: "m").filter { $0.action == "job.submit" }
        #expect(audit.map(\.uid) == [65534] && audit.first?.target == job.id.rawValue)
    }

    @Test func withoutAnOwnerAJobRunsAsTheMountsUser() throws {
        let env = try JobsEnv()
        let s = env.service(#"id -u > uid.txt"#)
        let job = try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"))
        #expect(job.owner == JobOwner(uid: getuid(), gid: getgid()))
        try env.finish(s, job.id)
        #expect(env.text(s.workPath(of: job.id) + "/uid.txt") == "\(getuid())\n")
    }

    @Test func anotherUsersJobStartsThroughSetpriv() {
        #expect(switchingUser(JobOwner(uid: getuid(), gid: getgid())) == nil)
        let argv = switchingUser(JobOwner(uid: 65534, gid: 65534))
        #expect(argv?.first == "/usr/bin/setpriv" && argv?.contains("--reuid=65534") == true && argv?.contains("--regid=65534") == true)
    }
}

@Suite("JobService: a job starts only once its directory is made")
struct JobDirectoryRaceTests {
    /// The row is committed before the submitting thread makes the directory; a tick in between
    /// used to start `sh run.sh` before it existed (and the directory's log then lost the
    /// "started" line): the job ended "without an exit code". CI saw it under load.
    @Test func aQueuedJobWithoutItsRunScriptWaits() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let job = Job(id: "early", model: "m", version: "v1", dataset: "qa", params: [:], status: .queued,
                      executor: "local", created: Date())
        try env.catalog.insertJob(job)
        try env.tick(s)
        #expect(try env.job("early").status == .queued, "not started, not failed")
        let submitted = try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"))
        #expect(try env.finish(s, submitted.id).status == .succeeded, "a prepared job starts")
        #expect(try env.job("early").status == .queued)
    }
}
