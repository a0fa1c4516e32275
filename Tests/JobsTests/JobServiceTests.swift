import Foundation
import Glibc
import Testing
import ModelStore
import Catalog
import Registry
import Jobs

/// A command that waits for `$MODELFS_JOB_DIR/go`, then runs `then`.
func gated(_ then: String = "true") -> String {
    #"while [ ! -e "$MODELFS_JOB_DIR/go" ]; do sleep 0.05; done; "# + then
}

let writeCheckpoint = #"printf 'fine-tuned %s' "$MODELFS_JOB_ID" > "$MODELFS_OUTPUT_DIR/ckpt.safetensors""#

@Suite("JobService: submitting")
struct JobSubmitTests {
    @Test func unknownModelVersionOrDatasetIsNotFound() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let e1 = storeError { try s.submit(JobRequest(model: "nope", version: "v1", dataset: "qa")) }
        #expect(e1?.code == .notFound && e1?.message.contains("nope") == true, "\(e1?.message ?? "")")
        let e2 = storeError { try s.submit(JobRequest(model: "m", version: "v9", dataset: "qa")) }
        #expect(e2?.code == .notFound && e2?.message.contains("v9") == true, "\(e2?.message ?? "")")
        let e3 = storeError { try s.submit(JobRequest(model: "m", version: "v1", dataset: "nope")) }
        #expect(e3?.code == .notFound && e3?.message.contains("nope") == true, "\(e3?.message ?? "")")
        #expect(try env.catalog.jobs().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: env.jobsDir + "/m-v1-ft-1"))
    }

    @Test func aRequestMayNameTheVersionByAnAlias() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        try env.registry.setAlias("m", "production", to: "v1")
        let job = try s.submit(JobRequest(model: "m", version: "@production", dataset: "qa"))
        #expect(job.version == "v1", "the version the alias points at when the request is accepted")
        let e = storeError { try s.submit(JobRequest(model: "m", version: "@staging", dataset: "qa")) }
        #expect(e?.code == .notFound && e?.message.contains("@staging") == true, "\(e?.message ?? "")")
    }

    @Test func versionOrDatasetNotReadyIsBusy() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let uploading = try env.registry.beginVersion(model: "m", fileName: "v2.safetensors")
        try env.feed(uploading, [1, 2, 3])
        expectStoreError(.busy) { try s.submit(JobRequest(model: "m", version: "v2", dataset: "qa")) }
        let failed = try env.registry.beginVersion(model: "m", fileName: "v3.pt")
        try env.feed(failed, [1])
        failed.abort(reason: "test")
        expectStoreError(.busy) { try s.submit(JobRequest(model: "m", version: "v3", dataset: "qa")) }
        let wip = try env.registry.beginDataset(fileName: "wip.csv")
        try env.feed(wip, bytes("a,b\n"))
        expectStoreError(.busy) { try s.submit(JobRequest(model: "m", version: "v1", dataset: "wip")) }
        let broken = try env.registry.beginDataset(fileName: "broken.jsonl")
        broken.abort(reason: "test")
        expectStoreError(.busy) { try s.submit(JobRequest(model: "m", version: "v1", dataset: "broken")) }
        #expect(try env.catalog.jobs().isEmpty)
    }

    @Test func withoutATrainCommandNothingIsAccepted() throws {
        let env = try JobsEnv()
        let s = env.service(nil)
        let e = storeError { try env.submit(s) }
        #expect(e?.code == .invalidArgument && e?.message.contains("train-command") == true, "\(e?.message ?? "")")
        #expect(try env.catalog.jobs().isEmpty)
    }

    @Test func fileNamesAreAcceptedForVersionAndDataset() throws {
        let env = try JobsEnv()
        let job = try env.service("true").submit(JobRequest(model: "m", version: "v1.safetensors", dataset: "qa.jsonl"))
        #expect(job.id == "m-v1-ft-1")
        #expect(job.version == "v1" && job.dataset == "qa")
    }

    @Test func idsAreGeneratedAndExplicitNamesAreUnique() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let first = try env.submit(s, params: ["epochs": "3"])
        #expect(first.id == "m-v1-ft-1")
        #expect(first.status == .queued && first.executorID == nil)
        let number = try env.job(first.id).number
        #expect(number > 0)
        do {
            #expect(first.number == number)
        }
        #expect(try env.submit(s).id == "m-v1-ft-2")
        #expect(try env.submit(s, name: "m-v1-ft-3").id == "m-v1-ft-3")
        #expect(try env.submit(s).id == "m-v1-ft-4")
        #expect(try env.submit(s, name: "mine").id == "mine")
        expectStoreError(.alreadyExists) { try env.submit(s, name: "mine") }
        expectStoreError(.alreadyExists) { try env.submit(s, name: "m-v1-ft-1", params: ["epochs": "9"]) }
        expectStoreError(.invalidArgument) { try env.submit(s, name: ".hidden") }
        expectStoreError(.invalidArgument) { try env.submit(s, name: "submit") }
        expectStoreError(.invalidArgument) { try env.submit(s, name: "a/b") }
        #expect(try env.catalog.jobs().map(\.id).sorted() == ["m-v1-ft-1", "m-v1-ft-2", "m-v1-ft-3", "m-v1-ft-4", "mine"])
        // The refused duplicate left the first job's directory alone.
        let params = try JSONDecoder().decode([String: String].self, from: Data(env.read(env.jobsDir + "/m-v1-ft-1/params.json") ?? []))
        #expect(params == ["epochs": "3"])
        #expect(try env.job("m-v1-ft-1").params == ["epochs": "3"])
    }

    @Test func submitPreparesTheJobDirectory() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let job = try env.submit(s, params: ["epochs": "3", "lr": "0.5"])
        let dir = s.directory(of: job.id)
        #expect(dir == env.jobsDir + "/" + job.id.rawValue)
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: dir + "/output", isDirectory: &isDir) && isDir.boolValue)
        #expect(FileManager.default.fileExists(atPath: s.logPath(of: job.id)))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let spec = try decoder.decode(JobService.JobSpec.self, from: Data(env.read(dir + "/spec.json") ?? []))
        #expect(spec.id == job.id && spec.model == "m" && spec.version == "v1.safetensors" && spec.dataset == "qa.jsonl")
        #expect(spec.params == ["epochs": "3", "lr": "0.5"] && spec.executor == "local")
        #expect(try decoder.decode([String: String].self, from: Data(env.read(dir + "/params.json") ?? [])) == job.params)
        // The train command is the service's, written into run.sh; the request's values are not.
        #expect(env.text(dir + "/run.sh").contains("\ntrue\n"))
        #expect(!env.text(dir + "/run.sh").contains("0.5"))
    }
}

@Suite("JobService: running")
struct JobRunTests {
    @Test(arguments: [false, true])
    func aJobThatSucceedsBecomesANewVersionWithLineage(localStore: Bool) throws {
        let env = try JobsEnv(local: localStore)
        let s = env.service(writeCheckpoint)
        let id = try env.submit(s, params: ["epochs": "2"]).id
        let job = try env.finish(s, id)
        #expect(job.status == .succeeded, "\(job.error ?? "")")
        #expect(job.exitCode == 0)
        #expect(job.outputs == ["v2.safetensors"])
        #expect(job.error == nil)
        #expect(job.started != nil && job.finished != nil)
        let (_, v2) = try env.registry.version("m", "v2")
        #expect(v2.status == .ready && v2.format == "safetensors")
        #expect(v2.lineage == Lineage(parentVersion: "v1", dataset: "qa", job: id.rawValue))
        #expect(v2.note.contains(id.rawValue) && v2.note.contains("v1") && v2.note.contains("qa"), "\(v2.note)")
        let stored = try env.objects.get(v2.objectKey, range: nil)
        #expect(stored == bytes("fine-tuned \(id)"))
        #expect(v2.size == Int64(stored.count))
        #expect(try env.versionNames() == ["v1.safetensors", "v2.safetensors"])
        let log = env.text(s.logPath(of: id))
        #expect(log.contains("modelfs: job started on local as \(job.executorID ?? "?")"), "\(log)")
        #expect(log.contains("modelfs: job succeeded"), "\(log)")
        // Further ticks change nothing.
        try env.tick(s)
        #expect(try env.job(id) == job)
        #expect(try env.versionNames() == ["v1.safetensors", "v2.safetensors"])
    }

    @Test func onlyFilesWithAVersionExtensionBecomeVersions() throws {
        let env = try JobsEnv()
        let s = env.service("""
            o="$MODELFS_OUTPUT_DIR"; printf A > "$o/a.safetensors"; printf B > "$o/b.pt"; printf N > "$o/notes.bin"
            printf T > "$o/c.safetensors.tmp"; printf E > "$o/env.txt"; mkdir "$o/sub"; printf S > "$o/sub/d.safetensors"
            """)
        let id = try env.submit(s).id
        let job = try env.finish(s, id)
        #expect(job.status == .succeeded, "\(job.error ?? "")")
        #expect(job.outputs == ["v2.safetensors", "v3.pt"])
        #expect(try env.versionNames() == ["v1.safetensors", "v2.safetensors", "v3.pt"])
        #expect(try env.objects.get(try env.registry.version("m", "v2").1.objectKey, range: nil) == bytes("A"))
        #expect(try env.objects.get(try env.registry.version("m", "v3").1.objectKey, range: nil) == bytes("B"))
        #expect(try env.registry.version("m", "v3").1.lineage.job == id.rawValue)
    }

    @Test
    func aDirectoryNamedLikeACheckpointIsNotACheckpoint() throws {
        let env = try JobsEnv()
        let s = env.service(#"mkdir "$MODELFS_OUTPUT_DIR/shards.pt" && "# + writeCheckpoint)
        let id = try env.submit(s).id
        let job = try env.finish(s, id)
        #expect(job.status == .succeeded, "\(job.error ?? "")")
        #expect(job.outputs == ["v2.safetensors"])
    }

    @Test func aJobSucceedingWithoutCheckpointsAddsNoVersion() throws {
        let env = try JobsEnv()
        let s = env.service("echo no checkpoint")
        let id = try env.submit(s).id
        let job = try env.finish(s, id)
        #expect(job.status == .succeeded && job.outputs.isEmpty)
        #expect(try env.versionNames() == ["v1.safetensors"])
        #expect(env.text(s.logPath(of: id)).contains("no checkpoint\n"))
    }

    @Test func aCommandThatFailsFailsTheJob() throws {
        let env = try JobsEnv()
        let s = env.service(writeCheckpoint + "; echo oops >&2; sh -c 'exit 3'")
        let id = try env.submit(s).id
        let job = try env.finish(s, id)
        #expect(job.status == .failed)
        #expect(job.exitCode == 3)
        #expect(job.error?.contains("exited with 3") == true, "\(job.error ?? "")")
        #expect(job.outputs.isEmpty)
        #expect(try env.versionNames() == ["v1.safetensors"], "a failed job's checkpoint is not stored")
        let log = env.text(s.logPath(of: id))
        #expect(log.contains("oops\n") && log.contains("modelfs: job failed"), "\(log)")
    }

    /// Ordinary shell in the train command: `exit`, `exec`, `set -e`, `cd`. The script around it
    /// must still record how the command ended.
    @Test(arguments: [
        ("exit 3", JobStatus.failed, 3, [String]()),
        ("set -e; false; echo unreachable", .failed, 1, []),
        (#"exec sh -c 'printf x > "$MODELFS_OUTPUT_DIR/c.safetensors"'"#, .succeeded, 0, ["v2.safetensors"]),
        (#"cd "$MODELFS_OUTPUT_DIR" && printf x > c.safetensors"#, .succeeded, 0, ["v2.safetensors"]),
    ])
    func theExitCodeSurvivesTheCommandsShell(command: String, status: JobStatus, code: Int, outputs: [String]) throws {
        let env = try JobsEnv()
        let s = env.service(command)
        let id = try env.submit(s).id
        let job = try env.finish(s, id)
        do {
            #expect(job.status == status, "\(job.error ?? "")")
            #expect(job.exitCode == code)
            #expect(job.outputs == outputs)
        }
    }

    @Test func cancellingARunningJobStopsItsProcessGroup() throws {
        let env = try JobsEnv()
        // The shell and its `sleep` child: both must go.
        let s = env.service(#"printf early > "$MODELFS_OUTPUT_DIR/early.safetensors"; sleep 30 & wait; sleep 30"#)
        let id = try env.submit(s).id
        let (_, pid) = try env.running(s, id)
        #expect(pid > 0)
        #expect(eventually { liveMembers(ofGroup: pid).count >= 2 }, "the job's shell and its sleep run in the job's own group")
        try s.cancel(id)
        let job = try env.job(id)
        #expect(job.status == .cancelled && job.error == "cancelled")
        #expect(eventually { liveMembers(ofGroup: pid).isEmpty }, "no live process of the job's group remains")
        for _ in 0..<3 { try env.tick(s) }
        #expect(try env.job(id).status == .cancelled)
        #expect(try env.versionNames() == ["v1.safetensors"], "a cancelled job's checkpoint is not stored")
        #expect(!FileManager.default.fileExists(atPath: s.directory(of: id) + "/work/exit_code"))
        #expect(env.text(s.logPath(of: id)).contains("modelfs: job cancelled"))
        expectStoreError(.invalidArgument) { try s.cancel(id) }
        expectStoreError(.notFound) { try s.cancel("no-such-job") }
    }

    @Test func cancellingAFinishedJobIsRefusedWithWhatBecameOfIt() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let id = try env.submit(s).id
        #expect(try env.finish(s, id).status == .succeeded)
        let e = storeError { try s.cancel(id) }
        #expect(e?.code == .invalidArgument && e?.message == "job \(id) already succeeded", "\(e?.message ?? "")")
        #expect(try env.job(id).status == .succeeded)
        #expect(!env.text(s.logPath(of: id)).contains("job cancelled"))
    }

    @Test func aCancelledJobsProcessIsReaped() throws {
        let env = try JobsEnv()
        let s = env.service("sleep 30")
        let id = try env.submit(s).id
        let (_, pid) = try env.running(s, id)
        try s.cancel(id)
        #expect(try eventually { try env.tick(s); return liveMembers(ofGroup: pid).isEmpty })
        try env.tick(s)
        #expect(try eventually { try env.tick(s); return kill(pid, 0) == -1 && errno == ESRCH }, "process \(pid) still exists (a zombie)")
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
    }

    @Test func cancellingAQueuedJobMeansItNeverStarts() throws {
        let env = try JobsEnv()
        let s = env.service(writeCheckpoint)
        let id = try env.submit(s).id
        try s.cancel(id)
        #expect(try env.job(id).status == .cancelled)
        for _ in 0..<3 { try env.tick(s) }
        let job = try env.job(id)
        #expect(job.status == .cancelled && job.executorID == nil)
        #expect(!env.text(s.logPath(of: id)).contains("job started"))
        #expect(try env.versionNames() == ["v1.safetensors"])
    }

    @Test func aCancelArrivingWhileTheJobIsLaunchedStopsIt() throws {
        let env = try JobsEnv()
        // Long enough that a job nobody stops finishes only well after any kill would have landed.
        let s = env.service(#"sleep 10; printf late > "$MODELFS_OUTPUT_DIR/late.safetensors""#)
        let id = try env.submit(s).id
        let v1Key = try env.registry.version("m", "v1").1.objectKey
        let first = LockedFlag()
        // The cancel lands while the service fetches the job's inputs: after queued → running, before the process starts.
        env.memory.injectFaults { op, key, _ in
            if op == .get && key == v1Key && first.once() { try? s.cancel(id) }
            return nil
        }
        try env.tick(s)
        #expect(try env.job(id).status == .cancelled)
        #expect(eventually { liveJobProcesses(jobsDir: env.jobsDir, id: id).isEmpty })
        do {
            #expect(!FileManager.default.fileExists(atPath: s.directory(of: id) + "/work/exit_code"), "the command ran to its end")
        }
        for _ in 0..<3 { try env.tick(s) }
        #expect(try env.job(id).status == .cancelled)
        #expect(try env.versionNames() == ["v1.safetensors"])
    }

    @Test func inputsThatCannotBeFetchedFailTheJob() throws {
        let env = try JobsEnv()
        let s = env.service(writeCheckpoint)
        let id = try env.submit(s).id
        env.memory.injectFaults { op, _, _ in op == .get ? .unreachable("test: object storage is down") : nil }
        let job = try env.finish(s, id)
        #expect(job.status == .failed && job.executorID == nil)
        #expect(job.error?.contains("object storage is down") == true, "\(job.error ?? "")")
        #expect(env.text(s.logPath(of: id)).contains("modelfs: job failed"))
        #expect(try env.versionNames() == ["v1.safetensors"])
    }

    @Test func checkpointsThatCannotBeStoredFailTheJob() throws {
        let env = try JobsEnv()
        let s = env.service(writeCheckpoint)
        let id = try env.submit(s).id
        env.memory.injectFaults { op, key, _ in
            [.put, .create, .uploadPart, .complete].contains(op) && key.hasPrefix("m/v2") ? .unreachable("test: no writes") : nil
        }
        let job = try env.finish(s, id)
        #expect(job.status == .failed)
        #expect(job.exitCode == 0)
        #expect(job.error?.contains("checkpoints not stored") == true, "\(job.error ?? "")")
        #expect(try env.registry.versions(of: "m").filter { $0.status == .ready }.map(\.name) == ["v1"])
    }

    @Test func theEnvironmentNamesInputsOutputsAndParams() throws {
        let env = try JobsEnv()
        let s = env.service(#"env > "$MODELFS_OUTPUT_DIR/env.txt""#)
        let params = ["epochs": "3", "lr": "0.5", "warm-up": "10"]
        let id = try env.submit(s, params: params).id
        let job = try env.finish(s, id)
        #expect(job.status == .succeeded, "\(job.error ?? "")")
        #expect(job.outputs.isEmpty, "env.txt is not a checkpoint")
        let dir = s.directory(of: id)
        var vars: [String: String] = [:]
        for line in env.text(dir + "/output/env.txt").split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            vars[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        #expect(vars["MODELFS_JOB_ID"] == id.rawValue)
        #expect(vars["MODELFS_JOB_DIR"] == dir)
        #expect(vars["MODELFS_MODEL"] == "m")
        #expect(vars["MODELFS_VERSION"] == "v1")
        #expect(vars["MODELFS_DATASET"] == "qa")
        #expect(vars["MODELFS_OUTPUT_DIR"] == dir + "/output")
        #expect(vars["MODELFS_PARAM_EPOCHS"] == "3")
        #expect(vars["MODELFS_PARAM_LR"] == "0.5")
        #expect(vars["MODELFS_PARAM_WARM_UP"] == "10")
        let modelPath = try #require(vars["MODELFS_MODEL_PATH"])
        #expect(modelPath.hasSuffix("/v1.safetensors"))
        #expect(env.read(modelPath) == JobsEnv.modelBytes)
        let datasetPath = try #require(vars["MODELFS_DATASET_PATH"])
        #expect(datasetPath.hasSuffix("/qa.jsonl"))
        #expect(env.read(datasetPath) == JobsEnv.datasetBytes)
        let paramsPath = try #require(vars["MODELFS_PARAMS"])
        #expect(try JSONDecoder().decode([String: String].self, from: Data(env.read(paramsPath) ?? [])) == params)
        // The request's values are not the mount's environment: nothing else named MODELFS_ leaks in.
        let known: Set = ["MODELFS_JOB_ID", "MODELFS_JOB_DIR", "MODELFS_MODEL", "MODELFS_VERSION", "MODELFS_DATASET",
                          "MODELFS_MODEL_PATH", "MODELFS_DATASET_PATH", "MODELFS_OUTPUT_DIR", "MODELFS_PARAMS",
                          "MODELFS_PARAM_EPOCHS", "MODELFS_PARAM_LR", "MODELFS_PARAM_WARM_UP"]
        #expect(Set(vars.keys.filter { $0.hasPrefix("MODELFS_") }) == known)
        // And nothing else of the mount's environment (its AWS_* credentials, say): PATH, HOME
        // and what the shell sets itself.
        #expect(Set(vars.keys.filter { !$0.hasPrefix("MODELFS_") }).subtracting(["PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_"]).isEmpty,
                "\(vars.keys.sorted())")
        #expect(vars["PATH"] == ProcessInfo.processInfo.environment["PATH"])
    }

    @Test func jobDirectoriesAndLogsArePrivate() throws {
        let env = try JobsEnv()
        let s = env.service(writeCheckpoint + "; echo trained")
        let id = try env.submit(s).id
        #expect(try env.finish(s, id).status == .succeeded)
        func mode(_ path: String) -> mode_t {
            var st = stat()
            return stat(path, &st) == 0 ? st.st_mode & 0o777 : 0o7777
        }
        let dir = s.directory(of: id)
        for path in [env.jobsDir, dir, dir + "/output", dir + "/inputs"] { #expect(mode(path) == 0o700, "\(path)") }
        for path in [s.logPath(of: id), dir + "/spec.json", dir + "/params.json", dir + "/run.sh", dir + "/inputs/v1.safetensors"] {
            #expect(mode(path) == 0o600, "\(path): \(String(mode(path), radix: 8))")
        }
        #expect(env.text(s.logPath(of: id)).contains("trained"))
    }

    @Test func withAMountInputsAreReadThroughItAndNotFetched() throws {
        let env = try JobsEnv()
        var configuration = JobService.Configuration(directory: env.jobsDir, trainCommand: #"env > "$MODELFS_OUTPUT_DIR/env.txt""#)
        configuration.mountpoint = "/mnt/store"
        let s = JobService(registry: env.registry, executor: LocalExecutor(), configuration: configuration)
        let id = try env.submit(s).id
        let reads = env.memory.calls(.get)
        #expect(try env.finish(s, id).status == .succeeded)
        let text = env.text(s.directory(of: id) + "/output/env.txt")
        #expect(text.contains("MODELFS_MODEL_PATH=/mnt/store/models/m/v1.safetensors\n"))
        #expect(text.contains("MODELFS_DATASET_PATH=/mnt/store/datasets/qa.jsonl\n"))
        #expect(env.memory.calls(.get) == reads, "nothing fetched from object storage")
    }

    @Test func requestValuesNeverReachAShell() throws {
        let env = try JobsEnv()
        let model = #"x; touch PWNED $(touch PWNED5) `touch PWNED6`"#
        try env.registry.createModel(model)
        try env.putVersion(model, "v1.safetensors", JobsEnv.modelBytes)
        // The mount's command uses the values as a careless script would, quoted and not.
        let s = env.service(#"""
            echo $MODELFS_MODEL $MODELFS_PARAM_A "$MODELFS_PARAM_B" $MODELFS_JOB_ID > "$MODELFS_OUTPUT_DIR/seen.log"
            cat "$MODELFS_PARAMS" >> "$MODELFS_OUTPUT_DIR/seen.log"
            printf ok > "$MODELFS_OUTPUT_DIR/c.safetensors"
            """#)
        let params = ["a": "$(touch PWNED2)", "b": "`touch PWNED3`; touch PWNED4"]
        let generated = try s.submit(JobRequest(model: model, version: "v1", dataset: "qa", params: params))
        let named = try s.submit(JobRequest(model: model, version: "v1", dataset: "qa", name: "y; touch PWNED7 && $(touch PWNED8)", params: params))
        for id in [generated.id, named.id] {
            let job = try env.finish(s, id)
            #expect(job.status == .succeeded, "\(job.error ?? "")")
            #expect(env.text(s.directory(of: id) + "/output/seen.log").contains("$(touch PWNED2)"))
        }
        #expect(generated.id.rawValue == model + "-v1-ft-1")
        #expect(try env.versionNames(model) == ["v1.safetensors", "v2.safetensors", "v3.safetensors"])
        var found: [String] = []
        if let walker = FileManager.default.enumerator(atPath: env.dir) {
            for case let path as String in walker where (path as NSString).lastPathComponent.hasPrefix("PWNED") { found.append(path) }
        }
        let cwd = FileManager.default.currentDirectoryPath
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: cwd)) ?? [] where entry.hasPrefix("PWNED") { found.append(cwd + "/" + entry) }
        #expect(found.isEmpty, "created: \(found)")
    }

    @Test func maxRunningBoundsConcurrency() throws {
        let env = try JobsEnv()
        let s = env.service(gated(writeCheckpoint), maxRunning: 1)
        let a = try env.submit(s).id
        let b = try env.submit(s).id
        try env.running(s, a)
        for _ in 0..<5 { try env.tick(s) }
        var second = try env.job(b)
        #expect(second.status == .queued && second.executorID == nil)
        #expect(liveJobProcesses(jobsDir: env.jobsDir, id: b).isEmpty)
        // When the first ends, the second starts.
        env.go(s, a)
        #expect(try env.finish(s, a).status == .succeeded)
        second = try env.running(s, b).0
        #expect(second.status == .running)
        try s.cancel(b)
        #expect(try env.job(b).status == .cancelled)
    }

    @Test func maxRunningTwoRunsTwo() throws {
        let env = try JobsEnv()
        let s = env.service(gated(), maxRunning: 2)
        let ids = try (0..<3).map { _ in try env.submit(s).id }
        try env.running(s, ids[0])
        try env.running(s, ids[1])
        for _ in 0..<5 { try env.tick(s) }
        #expect(try env.job(ids[2]).status == .queued)
        #expect(try env.job(ids[0]).status == .running && env.job(ids[1]).status == .running)
        for id in ids { try s.cancel(id) }
    }

    @Test func aSecondServiceTakesOverRunningAndQueuedJobs() throws {
        let env = try JobsEnv()
        let command = gated(writeCheckpoint)
        let first = env.service(command)
        let a = try env.submit(first).id
        let b = try env.submit(first).id
        let (_, pid) = try env.running(first, a)
        // Like a remount: a new catalog connection, registry and service over the same files.
        let catalog = try Catalog(path: env.dir + "/catalog.sqlite")
        let registry = Registry(catalog: catalog, objects: env.objects)
        let second = JobService(registry: registry, executor: LocalExecutor(),
                                configuration: JobService.Configuration(directory: env.jobsDir, trainCommand: command))
        for _ in 0..<3 { try env.tick(second) }
        #expect(try env.job(a).status == .running && env.job(a).executorID == String(pid))
        #expect(try env.job(b).status == .queued, "the running job still counts against maxRunning")
        env.go(second, a)
        let done = try env.finish(second, a)
        #expect(done.status == .succeeded && done.outputs == ["v2.safetensors"], "\(done.error ?? "")")
        #expect(try registry.version("m", "v2").1.lineage.job == a.rawValue)
        let (_, pidB) = try env.running(second, b)
        #expect(pidB != pid)
        env.go(second, b)
        #expect(try env.finish(second, b).outputs == ["v3.safetensors"])
    }

    @Test func aJobKilledWithoutAnExitCodeFails() throws {
        let env = try JobsEnv()
        let s = env.service(gated(writeCheckpoint))
        let id = try env.submit(s).id
        let (_, pid) = try env.running(s, id)
        #expect(kill(-pid, SIGKILL) == 0)
        let job = try env.finish(s, id)
        #expect(job.status == .failed)
        #expect(job.error?.contains("ended without an exit code") == true, "\(job.error ?? "")")
        #expect(job.exitCode == nil)
        #expect(env.text(s.logPath(of: id)).contains("ended without an exit code"))
        #expect(try env.versionNames() == ["v1.safetensors"])
    }
}

@Suite("JobService: concurrent submissions")
struct JobConcurrencyTests {
    @Test func simultaneousRequestsGetDistinctGeneratedIds() throws {
        let env = try JobsEnv()
        let s = env.service("true")
        let results = LockedList<Result<JobID, StoreError>>()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do throws(StoreError) {
                results.append(.success(try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa")).id))
            } catch {
                results.append(.failure(error))
            }
        }
        let ids = results.all.compactMap { try? $0.get() }
        #expect(Set(ids).count == ids.count)
        do {
            #expect(ids.count == 8, "refused: \(results.all.compactMap { if case .failure(let e) = $0 { return e.message } else { return nil } })")
        }
        #expect(try env.catalog.jobs().count == ids.count)
    }
}

@Suite("JobService: what jobs protect")
struct JobProtectionTests {
    /// A submission and a delete of its version race (each with its own connection, as two
    /// processes): either the job is queued and the version stays, or the version is gone and
    /// the submission is refused — never a job whose version is gone.
    @Test func aSubmissionRacingADeleteOfItsVersionNeverQueuesAJobWithoutIt() throws {
        let env = try JobsEnv()
        let other = Registry(catalog: try Catalog(path: env.dir + "/catalog.sqlite"), objects: env.objects)
        let s = env.service("true")
        for round in 0..<20 {
            try env.putVersion("m", "r\(round).safetensors", bytes("weights \(round)"))
            let submitted = LockedList<Result<Job, StoreError>>()
            let deleted = LockedList<StoreError?>()
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                do throws(StoreError) {
                    if i == 0 {
                        submitted.append(.success(try s.submit(JobRequest(model: "m", version: "r\(round)", dataset: "qa"))))
                    } else {
                        try other.deleteVersion("m", "r\(round)")
                        deleted.append(nil)
                    }
                } catch {
                    if i == 0 { submitted.append(.failure(error)) } else { deleted.append(error) }
                }
            }
            let job = try? submitted.all.first?.get()
            let deleteError = deleted.all.first ?? nil
            let version = try env.catalog.version(modelID: try env.registry.model("m").id, name: "r\(round)")
            if let job {
                #expect(version != nil && deleteError?.code == .busy, "round \(round): job \(job.id) queued, delete: \(deleteError?.message ?? "done")")
                try env.finish(s, job.id)
            } else {
                let refusal = submitted.all.first.flatMap { if case .failure(let e) = $0 { return e } else { return nil } }
                #expect(version == nil && deleteError == nil && refusal?.code == .notFound,
                        "round \(round): submit \(refusal?.message ?? "?"), delete \(deleteError?.message ?? "done")")
            }
        }
    }

    @Test func versionAndModelInUseCannotBeDeleted() throws {
        let env = try JobsEnv()
        try env.putVersion("m", "base.safetensors", bytes("other"))
        let s = env.service(gated(writeCheckpoint))
        let id = try env.submit(s).id
        // Queued.
        expectStoreError(.busy) { try env.registry.deleteVersion("m", "v1") }
        expectStoreError(.busy) { try env.registry.deleteModel("m") }
        // A version no job uses may go.
        try env.registry.deleteVersion("m", "base")
        // Running.
        try env.running(s, id)
        let e = storeError { try env.registry.deleteVersion("m", "v1") }
        #expect(e?.code == .busy && e?.message.contains(id.rawValue) == true, "\(e?.message ?? "")")
        expectStoreError(.busy) { try env.registry.deleteModel("m") }
        #expect(try env.versionNames() == ["v1.safetensors"])
        // Finished: allowed again.
        env.go(s, id)
        #expect(try env.finish(s, id).status == .succeeded)
        try env.registry.deleteVersion("m", "v1")
        #expect(try env.versionNames() == ["v2.safetensors"])
        try env.registry.deleteModel("m")
        #expect(try env.catalog.model(named: "m") == nil)
    }

    @Test func aCancelledJobReleasesItsVersion() throws {
        let env = try JobsEnv()
        try env.putVersion("m", "v2.safetensors", bytes("other"))
        let s = env.service("sleep 30")
        let id = try env.submit(s).id
        try env.running(s, id)
        expectStoreError(.busy) { try env.registry.deleteVersion("m", "v1") }
        try s.cancel(id)
        try env.registry.deleteVersion("m", "v1")
        #expect(try env.versionNames() == ["v2.safetensors"])
    }

    @Test func aDatasetInUseCannotBeDeleted() throws {
        let env = try JobsEnv()
        let s = env.service(gated(writeCheckpoint))
        let id = try env.submit(s).id
        do {
            expectStoreError(.busy) { try env.registry.deleteDataset("qa") }
        }
        env.go(s, id)
        let job = try env.finish(s, id)
        do {
            #expect(job.status == .succeeded, "\(job.error ?? "")")
        }
    }

    @Test func renamingTheModelOfARunningJobDoesNotLoseItsCheckpoints() throws {
        let env = try JobsEnv()
        let s = env.service(gated(writeCheckpoint))
        let id = try env.submit(s).id
        try env.running(s, id)
        let renamed = (try? env.registry.renameModel("m", to: "m2")) != nil
        env.go(s, id)
        let job = try env.finish(s, id)
        do {
            #expect(job.status == .succeeded, "\(job.error ?? "")")
            let names = try env.versionNames(renamed ? "m2" : "m")
            #expect(names == ["v1.safetensors", "v2.safetensors"])
        }
    }
}

@Suite("JobService: what a job leaves is opened without trusting it")
struct JobFilesTests {
    /// A link, a FIFO and a hard link to another user's file in `output/` are left out with the
    /// reason in the log; a regular file of the job's user is taken. Nothing waits on the FIFO.
    @Test func onlyRegularFilesOfTheJobsUserBecomeVersions() throws {
        let env = try JobsEnv()
        let secret = env.dir + "/secret.pt"
        try "root only".write(toFile: secret, atomically: true, encoding: .utf8)
        chown(secret, 65534, 65534)
        let s = env.service(#"""
            cd "$MODELFS_OUTPUT_DIR" && printf mine > a.pt && ln -s "\#(secret)" b.pt && mkfifo c.pt && ln "\#(secret)" d.pt
            """#)
        let job = try env.finish(s, try env.submit(s).id)
        #expect(job.status == .succeeded && job.outputs == ["v2.pt"], "\(job.error ?? "") \(env.text(s.logPath(of: job.id)))")
        let log = env.text(s.logPath(of: job.id))
        #expect(log.contains("b.pt left out: b.pt is a symbolic link") && log.contains("c.pt left out: c.pt is not a regular file"), "\(log)")
        #expect(log.contains("d.pt left out: d.pt belongs to uid 65534"), "\(log)")
    }

    @Test func aMetricsFileThatIsALinkStoresNothing() throws {
        let env = try JobsEnv()
        let other = env.dir + "/other.json"
        try #"{"accuracy": 1}"#.write(toFile: other, atomically: true, encoding: .utf8)
        let s = env.service(nil, eval: #"ln -s "\#(other)" "$MODELFS_METRICS_FILE""#)
        let job = try env.finish(s, try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate).id)
        #expect(job.status == .failed && job.error?.contains("symbolic link") == true, "\(job.error ?? "")")
        #expect(try env.catalog.evaluations(versionID: try env.registry.version("m", "v1").1.id).isEmpty)
    }
}

@Suite("JobService: jobs obey owners")
struct JobPermissionTests {
    let nobody = JobOwner(uid: 65534, gid: 65534)

    @Test func trainingNeedsToReadTheVersionAndTheDatasetAndToWriteTheModel() throws {
        try #require(getuid() == 0, "only root runs jobs as another user")
        let env = try JobsEnv()
        let s = env.service(writeCheckpoint)
        try env.registry.createModel("private", owner: Ownership(uid: 0, gid: 0, mode: 0o700))
        try env.putVersion("private", "v1.pt", [1, 2, 3])
        try env.registry.createModel("shared", owner: Ownership(uid: 0, gid: 0, mode: 0o755))
        try env.putVersion("shared", "v1.pt", [1, 2, 3])
        for (model, reason) in [("private", "may not read private/v1.pt"), ("shared", "may not add versions to models/shared")] {
            let e = storeError { try s.submit(JobRequest(model: model, version: "v1", dataset: "qa"), owner: nobody) }
            #expect(e?.code == .accessDenied && e?.message.contains(reason) == true, "\(e?.message ?? "")")
        }
        #expect(try env.catalog.jobs().isEmpty, "nothing queued")
        // Their own model (and a dataset anyone may read): accepted.
        try env.registry.createModel("theirs", owner: Ownership(uid: 65534, gid: 65534, mode: 0o755))
        try env.putVersion("theirs", "v1.pt", [1, 2, 3])
        #expect(try s.submit(JobRequest(model: "theirs", version: "v1", dataset: "qa"), owner: nobody).owner == nobody)
    }

    @Test func anEvaluationOfAnotherUsersVersionIsRefusedAndTheTrailNamesTheAsker() throws {
        try #require(getuid() == 0, "only root runs jobs as another user")
        let env = try JobsEnv()
        let s = env.service(nil, eval: #"echo '{"accuracy": 0.5}' > "$MODELFS_METRICS_FILE""#)
        let e = storeError { try s.submit(JobRequest(model: "m", version: "v1", dataset: "qa"), kind: .evaluate, owner: nobody) }
        #expect(e?.code == .accessDenied && e?.message.contains("may not store metrics on m/v1.safetensors") == true, "\(e?.message ?? "")")
        try env.registry.createModel("theirs", owner: Ownership(uid: 65534, gid: 65534, mode: 0o755))
        try env.putVersion("theirs", "v1.pt", [1, 2, 3])
        try env.registry.changeOwnership(.version(try env.registry.version("theirs", "v1").1.id), mode: nil, uid: 65534, gid: 65534,
                                         defaultOwner: Ownership(uid: 0, gid: 0, mode: 0o444))
        let job = try s.submit(JobRequest(model: "theirs", version: "v1", dataset: "qa"), kind: .evaluate, owner: nobody)
        #expect(try env.finish(s, job.id).status == .succeeded)
        let trail = try env.catalog.audit(model: "theirs").filter { $0.action == "version.evaluate" }
        #expect(trail.map(\.uid) == [65534], "the evaluation is the asker's doing, not root's")
    }
}
