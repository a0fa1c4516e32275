import Foundation
import Glibc
import Testing
import ModelStore
import Catalog
import Registry
import Jobs

/// Two nodes on one catalog: node a runs a job, its lease runs out (an outage longer than the
/// lease), node b fails the job; a was only cut off, so it takes the job back and imports its
/// checkpoint exactly once.
@Suite("JobService: jobs of a node whose lease ran out")
struct JobLeaseTests {
    let env: JobsEnv
    let a: JobService
    let b: JobService

    init() throws {
        env = try JobsEnv()
        var configuration = JobService.Configuration(directory: env.jobsDir, trainCommand: gated(writeCheckpoint))
        configuration.maxRunning = 1
        a = JobService(registry: Registry(catalog: env.catalog, objects: env.objects, node: "a"), executor: LocalExecutor(),
                       configuration: configuration)
        b = JobService(registry: Registry(catalog: env.catalog, objects: env.objects, node: "b"), executor: LocalExecutor(),
                       configuration: configuration)
        for node in ["a", "b"] { try env.catalog.renewLease(node: node, host: "h", pid: 1, role: "mount", seconds: 600) }
    }

    /// Starts a job on a, lets a's lease run out, ends the job meanwhile; b fails it.
    func jobFailedForALeaseThatRanOut() throws -> JobID {
        let job = try a.submit(JobRequest(model: "m", version: "v1", dataset: "qa"))
        try env.drive(a, job.id) { $0.status == .running && $0.executorID != nil }
        try env.catalog.releaseLease(node: "a")
        FileManager.default.createFile(atPath: env.jobsDir + "/\(job.id)/go", contents: nil)
        #expect(eventually { FileManager.default.fileExists(atPath: env.jobsDir + "/\(job.id)/work/exit_code") })
        try env.tick(b)
        let failed = try env.job(job.id)
        #expect(failed.status == .failed && failed.error?.contains("lease ran out") == true, "\(failed.error ?? "")")
        try env.catalog.renewLease(node: "a", host: "h", pid: 1, role: "mount", seconds: 600)
        return job.id
    }

    @Test func aNodeThatWasOnlyCutOffTakesItsJobBackAndImportsOnce() throws {
        let id = try jobFailedForALeaseThatRanOut()
        let done = try env.drive(a, id) { $0.status == .succeeded }
        #expect(done.outputs == ["v2.safetensors"] && done.error == nil)
        for _ in 0..<3 { try env.tick(a); try env.tick(b) }
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1", "v2"], "one version from one checkpoint")
    }

    @Test func aJobWhoseImportWasClaimedBeforeIsConcludedNotImportedAgain() throws {
        let job = try a.submit(JobRequest(model: "m", version: "v1", dataset: "qa"))
        try env.drive(a, job.id) { $0.status == .running && $0.executorID != nil }
        // Its import claimed and done, then the catalog went away before the job was marked succeeded.
        #expect(try env.catalog.claimJobImport(id: job.id))
        let made = try env.registry.beginVersion(model: "m", fileName: "v2.safetensors", lineage: Lineage(parentVersion: "v1", job: job.id.rawValue))
        try env.feed(made, Array("imported".utf8))
        try made.finishVersion()
        try env.catalog.releaseLease(node: "a")
        FileManager.default.createFile(atPath: env.jobsDir + "/\(job.id)/go", contents: nil)
        #expect(eventually { FileManager.default.fileExists(atPath: env.jobsDir + "/\(job.id)/work/exit_code") })
        try env.tick(b)
        #expect(try env.job(job.id).status == .failed)
        try env.catalog.renewLease(node: "a", host: "h", pid: 1, role: "mount", seconds: 600)
        let done = try env.drive(a, job.id) { $0.status == .succeeded }
        #expect(done.outputs == ["v2.safetensors"])
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1", "v2"], "the checkpoint was not imported a second time")
    }

    /// A cancel on node b of a job node a runs: b records it and signals nothing (a local job's
    /// number is a process of a's, and here of whatever has it); a stops its job at its next look.
    @Test func aJobCancelledOnAnotherNodeIsStoppedByItsOwnNode() throws {
        let job = try a.submit(JobRequest(model: "m", version: "v1", dataset: "qa"))
        let running = try env.drive(a, job.id) { $0.status == .running && $0.executorID != nil }
        let pid = try #require(pid_t(running.executorID ?? ""))
        try withSIGTERMUnblocked { try b.cancel(job.id) }
        #expect(try env.job(job.id).status == .cancelled)
        usleep(500_000)
        #expect(kill(pid, 0) == 0 && !liveJobProcesses(jobsDir: env.jobsDir, id: job.id).isEmpty, "b signalled a's process")
        try env.tick(a)
        #expect(eventually { liveJobProcesses(jobsDir: env.jobsDir, id: job.id).isEmpty }, "a stopped its cancelled job")
        #expect(try env.job(job.id).status == .cancelled)
    }

    @Test func aJobWhoseProcessIsGoneWithoutAnExitCodeStaysFailed() throws {
        let job = try a.submit(JobRequest(model: "m", version: "v1", dataset: "qa"))
        let running = try env.drive(a, job.id) { $0.status == .running && $0.executorID != nil }
        try env.catalog.releaseLease(node: "a")
        let pid = try #require(pid_t(running.executorID ?? ""))
        kill(-pid, SIGKILL)
        #expect(eventually { liveJobProcesses(jobsDir: env.jobsDir, id: job.id).isEmpty })
        try env.tick(b)
        try env.catalog.renewLease(node: "a", host: "h", pid: 1, role: "mount", seconds: 600)
        for _ in 0..<3 { try env.tick(a) }
        let failed = try env.job(job.id)
        #expect(failed.status == .failed && failed.error?.contains("lease ran out") == true, "really gone: not taken back")
    }
}
