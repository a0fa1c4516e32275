import Foundation
import Glibc
import Testing
import ModelStore
import Catalog
import Registry
@testable import Jobs

/// A server that answers 200 on `/` once listening (Python's own, as a serve command would be).
let httpServer = #"exec python3 -m http.server "$MODELFS_PORT" --bind 127.0.0.1"#

/// Services run by a runner on this machine, with real processes and real HTTP: ready when the
/// health path answers, failed with the log's last lines, stopped and restarted, and moved with
/// the alias they follow only once the new server is ready.
@Suite("ServiceRunner")
final class ServiceRunnerTests {
    let env: JobsEnv
    var servicesDir: String { env.dir + "/services" }

    init() throws {
        env = try JobsEnv()
        try env.putVersion("m", "v2.safetensors", bytes("second weights"))
        try env.putVersion("m", "v3.safetensors", bytes("third weights"))
    }

    deinit {
        // No server a test started outlives it.
        let prefix = Array("MODELFS_SERVICE_DIR=\(servicesDir)/".utf8)
        for pid in procPids() {
            guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
                  environ.split(separator: 0).contains(where: { Array($0).starts(with: prefix) }) else { continue }
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }

    func runner(_ command: String?, timeout: Double = 60, drain: Double = 0) -> ServiceRunner {
        var c = ServiceRunner.Configuration(directory: servicesDir, command: command)
        c.healthPath = "/"
        c.timeout = timeout
        c.drain = drain
        c.mountpoint = "/mnt/modelfs"
        c.pollInterval = 0.05
        return ServiceRunner(registry: env.registry, executor: LocalExecutor(), configuration: c)
    }

    var me: Ownership.Requester { Actor.process.requester }
    var owner: JobOwner { JobOwner(uid: getuid(), gid: getgid()) }

    func start(_ r: ServiceRunner, _ version: String = "v1", name: String? = nil) throws -> Service {
        try r.submit(Registry.ServiceStart(model: "m", version: version, name: name.map { ServiceID($0) }), owner: owner, requester: me)
    }

    /// Ticks until the service satisfies `condition` (bounded); returns it as it is then.
    @discardableResult
    func drive(_ r: ServiceRunner, _ id: ServiceID, sourceLocation: SourceLocation = #_sourceLocation,
               until condition: (Service) -> Bool) throws -> Service {
        _ = try eventually {
            try withSIGTERMUnblocked { try r.tick() }
            return condition(try #require(try env.registry.service(named: id)))
        }
        let s = try #require(try env.registry.service(named: id))
        #expect(condition(s), "service \(id) is \(s.status.rawValue) (\(s.reason ?? "no reason"))", sourceLocation: sourceLocation)
        return s
    }

    func answers(_ endpoint: String?) -> Bool { endpoint.flatMap { HealthProbe.status(of: $0 + "/", timeout: 1) } == 200 }

    @Test func aServiceIsReadyWhenItsServerAnswersAndStopsAndRestarts() throws {
        let r = runner(httpServer)
        let s = try start(r)
        #expect(s.id == "m-v1-1" && s.status == .starting && s.node == "local", "asked of this mount: this node runs it")
        let ready = try drive(r, s.id) { $0.status == .ready }
        #expect(answers(ready.endpoint), "the endpoint is the server's")
        #expect(ready.node == "local" && ready.instance == 1 && ready.executorID != nil)
        let log = env.text(r.logPath(of: s.id))
        #expect(log.contains("modelfs: started m/v1.safetensors on local") && log.contains("modelfs: ready at \(ready.endpoint!)"), "\(log)")
        // What the command was given: the version's path in the mount, the port, the bind address.
        let environ = String(decoding: FileManager.default.contents(atPath: "/proc/\(ready.executorID!)/environ") ?? Data(), as: UTF8.self)
        #expect(environ.contains("MODELFS_MODEL_PATH=/mnt/modelfs/models/m/v1.safetensors") && environ.contains("MODELFS_HOST=127.0.0.1"))
        #expect(!environ.contains("AWS_"), "the mount's credentials stay with the mount")

        try r.stop(s.id, requester: me)
        let stopped = try drive(r, s.id) { $0.status == .stopped }
        #expect(stopped.endpoint == nil)
        #expect(try eventually { !self.answers(ready.endpoint) }, "the server is gone")
        #expect(storeError { try r.stop(s.id, requester: me) }?.code == .invalidArgument, "already stopped")

        try r.restart(s.id, requester: me)
        let again = try drive(r, s.id) { $0.status == .ready }
        #expect(again.instance == 2 && again.endpoint != ready.endpoint && answers(again.endpoint))
        try r.restart(s.id, requester: me)
        let third = try drive(r, s.id) { $0.status == .ready && $0.instance == 3 }
        #expect(try eventually { !self.answers(again.endpoint) }, "a restart of a running service replaces its server")
        #expect(answers(third.endpoint))
    }

    @Test(arguments: [
        ("echo 'cannot load the weights'; exit 3", 60.0, "exited with code 3", "cannot load the weights"),
        ("echo 'still loading'; exec sleep 60", 1.0, "was not ready within 1 s", "still loading"),
    ])
    func aServerThatEndsOrNeverAnswersFailsWithItsLastLines(command: String, timeout: Double, why: String, line: String) throws {
        let r = runner(command, timeout: timeout)
        let s = try start(r)
        let failed = try drive(r, s.id) { $0.status == .failed }
        #expect(failed.reason?.contains(why) == true && failed.reason?.contains(line) == true, "\(failed.reason ?? "")")
        #expect(failed.endpoint == nil)
        let log = env.text(r.logPath(of: s.id))
        #expect(log.contains("modelfs: failed: the server ") && log.contains(why), "\(log)")
        if let pid = failed.executorID.flatMap(pid_t.init) {
            #expect(try eventually { kill(pid, 0) != 0 || procStat(pid)?.state == "Z" }, "a server that was not ready is stopped")
        }
        // Its version is free again.
        #expect(try env.registry.catalog.transaction { tx in try tx.servicesHolding(modelID: failed.modelID) }.isEmpty)
    }

    @Test func aServiceFollowingAnAliasMovesOnlyToAServerThatBecameReady() throws {
        // v2's server dies at once; v1's and v3's serve.
        let r = runner(#"[ "$MODELFS_VERSION" = v2 ] && { echo "v2 is broken"; exit 4; }; "# + httpServer)
        let m = try #require(try env.catalog.model(named: "m"))
        let v = try ["v1", "v2", "v3"].map { try #require(try env.catalog.version(modelID: m.id, name: $0)) }
        try env.registry.setAlias("m", "@production", to: "v1")
        let s = try start(r, "@production")
        #expect(s.id == "m-production-1" && s.alias == "@production")
        let first = try drive(r, s.id) { $0.status == .ready }
        #expect(first.versionID == v[0].id)

        try env.registry.setAlias("m", "@production", to: "v2")
        let kept = try drive(r, s.id) { $0.reason != nil }
        #expect(kept.status == .ready && kept.versionID == v[0].id && kept.endpoint == first.endpoint && answers(kept.endpoint),
                "the old server keeps serving")
        #expect(kept.reason?.contains("switch to v2.safetensors failed") == true && kept.refusedVersionID == v[1].id)
        try withSIGTERMUnblocked { try r.tick() }
        #expect(try env.registry.service(named: s.id)?.nextVersionID == nil, "a failed switch is not tried again")

        try env.registry.setAlias("m", "@production", to: "v3")
        let moved = try drive(r, s.id) { $0.versionID == v[2].id }
        #expect(moved.status == .ready && moved.reason == nil && moved.endpoint != first.endpoint && answers(moved.endpoint))
        // The server switched from drains with its version held; once it is stopped the version is free.
        #expect(moved.oldVersionID == v[0].id && moved.oldExecutorID == first.executorID)
        #expect(storeError { try self.env.registry.deleteVersion("m", "v1") }?.code == .busy, "v1's server still drains")
        #expect(try eventually { try withSIGTERMUnblocked { try r.tick() }; return !self.answers(first.endpoint) },
                "the old server stops after the drain")
        #expect(try env.registry.service(named: s.id)?.oldExecutorID == nil)
        _ = try env.registry.deleteVersion("m", "v1")
        let log = env.text(r.logPath(of: s.id))
        #expect(log.contains("switched from v1.safetensors to v3.safetensors") && log.contains("v2 is broken"), "\(log)")
        let trail = try env.catalog.audit(model: "m").map(\.action)
        #expect(trail.contains("service.start") && trail.contains("service.switch") && trail.contains("service.switch-failed"))
    }

    @Test func theRulesAreTheRegistrysWhoeverAsks() throws {
        let r = runner(httpServer)
        #expect(storeError { try self.runner(nil).submit(Registry.ServiceStart(model: "m", version: "v1"), owner: owner, requester: me) }?
            .code == .notSupported)
        #expect(storeError { try start(r, "v9") }?.code == .notFound)
        #expect(storeError { try start(r, "@nothing") }?.code == .notFound)
        #expect(storeError { try start(r, "v1", name: "status") }?.code == .invalidArgument)
        let s = try start(r, "v1", name: "web")
        #expect(storeError { try start(r, "v1", name: "web") }?.code == .alreadyExists)
        // A version a service holds stays, and so does its model.
        let busy = storeError { try env.registry.deleteVersion("m", "v1") }
        #expect(busy?.code == .busy && busy?.message.contains("served by service web") == true, "\(busy?.message ?? "")")
        #expect(storeError { try env.registry.deleteModel("m") }?.code == .busy)
        // Only its owner or root stops it.
        let stranger = Ownership.Requester(uid: 4242, groups: [4242])
        #expect(storeError { try r.stop(s.id, requester: stranger) }?.code == .accessDenied)
        #expect(storeError { try r.restart(s.id, requester: stranger) }?.code == .accessDenied)
        // A user serves only what they may read.
        let (_, v2) = try env.registry.version("m", "v2")
        try env.registry.changeOwnership(.version(v2.id), mode: 0o400, uid: nil, gid: nil,
                                         defaultOwner: Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultFileMode))
        let denied = storeError {
            try r.submit(Registry.ServiceStart(model: "m", version: "v2"), owner: JobOwner(uid: 4242, gid: 4242), requester: stranger)
        }
        #expect(denied?.code == .accessDenied, "\(denied?.message ?? "")")
        // Stopping holds the version until the node running it has stopped it; then it is free.
        try r.stop(s.id, requester: me)
        #expect(try env.registry.service(named: s.id)?.status == .stopping)
        #expect(storeError { try self.env.registry.deleteVersion("m", "v1") }?.code == .busy)
        try drive(r, s.id) { $0.status == .stopped }
        _ = try env.registry.deleteVersion("m", "v1")
        // One no mount has taken (the CLI's, the web's) is stopped at once.
        let cli = try env.registry.startService(Registry.ServiceStart(model: "m", version: "v2", name: "cli"), executor: "local",
                                                owner: owner, requester: me)
        #expect(cli.node == nil)
        #expect(try env.registry.stopService(cli.id, requester: me).status == .stopped)
    }

    @Test func aRequestIsParsedAsJobRequestsAre() throws {
        let r = try ServiceRequest.parse(Array(#"model=m version=@production name=web max_tokens=64"#.utf8))
        #expect(r.model == "m" && r.version == "@production" && r.name == "web" && r.params == ["max_tokens": "64"])
        let j = try ServiceRequest.parse(Array(#"{"model": "m", "version": "v1", "temperature": 0.5}"#.utf8))
        #expect(j.version == "v1" && j.name == nil && j.params == ["temperature": "0.5"])
        for (bad, why) in [("version=v1", "names no model"), ("model=m", "names no version"), ("model=m version=v1 name=log", "taken by a control file"),
                           ("model=m version=v1 a-b=1 a_b=2", "would both be"), ("model=m version=v1 x=\u{1b}[2J", "control character")] {
            let e = storeError { try ServiceRequest.parse(Array(bad.utf8)) }
            #expect(e?.code == .invalidArgument && e?.message.contains(why) == true, "\(bad): \(e?.message ?? "")")
        }
    }

    /// As Slurm does: the command's output goes to its own file, and the mount learns where the
    /// server is from the `work/host` the command's script writes — a file its user controls.
    final class HostReportingExecutor: JobExecutor, @unchecked Sendable {
        let local = LocalExecutor()
        let name = "local"
        let copiesOutput = true
        func start(script: String, directory: String, environment: [String: String], log: String, jobID: String,
                   user: JobOwner?) throws(StoreError) -> String {
            try local.start(script: script, directory: directory, environment: environment, log: log, jobID: jobID, user: user)
        }
        func state(of id: String, directory: String) -> ExecutorState { local.state(of: id, directory: directory) }
        func cancel(_ id: String) { local.cancel(id) }
    }

    /// A command that plants a link or a FIFO where the mount reads the server's host is not
    /// followed or waited on: the service never becomes ready there and fails at its deadline,
    /// and the runner's thread is never held.
    @Test(arguments: [#"ln -s /etc/hostname host.x && mv -f host.x host"#, #"rm -f host && mkfifo host"#])
    func aPlantedHostFileIsNeitherFollowedNorWaitedOn(plant: String) throws {
        var c = ServiceRunner.Configuration(directory: servicesDir, command: "\(plant); " + httpServer)
        c.healthPath = "/"; c.timeout = 3; c.mountpoint = "/mnt/modelfs"; c.pollInterval = 0.05
        let r = ServiceRunner(registry: env.registry, executor: HostReportingExecutor(), configuration: c)
        let s = try start(r)
        let failed = try drive(r, s.id) { $0.status == .failed }
        #expect(failed.reason?.contains("not ready within 3 s") == true, "\(failed.reason ?? "")")
        // The same executor with an honest host file: ready.
        var honest = c
        honest.command = httpServer
        let good = ServiceRunner(registry: env.registry, executor: HostReportingExecutor(), configuration: honest)
        let t = try start(good, name: "honest")
        let ready = try drive(good, t.id) { $0.status == .ready }
        #expect(answers(ready.endpoint) && ready.endpoint?.hasPrefix("http://127.0.0.1:") == false, "\(ready.endpoint ?? "")")
    }
}
