import Foundation
import Glibc
import Testing
import ModelStore
import Catalog
import Registry
import ReadPath
import Jobs
import ModelFS

/// `services/` without a mount: the control files' requests, answers and errors, the files a
/// service's directory shows, and who may stop it. No runner thread: nothing starts a server, so
/// what these see is what the catalog says.
@Suite struct ServicesNamespaceTests {
    final class Env: @unchecked Sendable {
        let dir: String
        let registry: Registry
        let fs: FileSystem
        init(command: String? = "exit 0", runner: Bool = true) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-fsservices-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            registry = Registry(catalog: try Catalog(path: dir + "/catalog.sqlite"), objects: MemoryObjectStore(), uploadConcurrency: 2)
            var c = ServiceRunner.Configuration(directory: dir + "/services", command: command)
            c.mountpoint = "/mnt"
            let services = runner ? ServiceRunner(registry: registry, executor: LocalExecutor(), configuration: c) : nil
            fs = FileSystem(registry: registry, cache: BlockCache(), services: services)
            try registry.createModel("m")
            let v = try registry.beginVersion(model: "m", fileName: "v1.safetensors")
            try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try v.write($0) }
            _ = try v.finishVersion()
        }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        func inode(_ path: String) throws -> UInt64 {
            var inode = rootInode
            for c in path.split(separator: "/") { inode = try fs.lookup(parent: inode, name: bytes(String(c))).inode }
            return inode
        }

        func write(_ path: String, _ text: String, _ ctx: RequestContext = .mountOwner) throws -> String {
            let h = try fs.open(try inode(path), flags: OpenFlags(O_RDWR), ctx).handle
            defer { try? fs.release(h) }
            _ = try bytes(text).withUnsafeBytes { b in try Result { () throws(StoreError) in try fs.write(h, offset: 0, bytes: b, ctx) }.get() }
            return String(decoding: try fs.read(h, offset: 0, size: 4096), as: UTF8.self)
        }

        func text(_ path: String) throws -> String {
            let h = try fs.open(try inode(path), flags: OpenFlags(O_RDONLY)).handle
            defer { try? fs.release(h) }
            return String(decoding: try fs.read(h, offset: 0, size: 65536), as: UTF8.self)
        }
    }

    @Test func aRequestStartsAServiceWhoseFilesSayWhatItIs() throws {
        let env = try Env()
        #expect(try env.fs.readdir(try env.inode("services")).map(\.name) == [".", "..", "submit"])
        #expect(try env.write("services/submit", "model=m version=v1 name=web max_tokens=64\n") == "web\n")
        #expect(try env.fs.readdir(try env.inode("services")).map(\.name) == [".", "..", "submit", "web"])
        #expect(try env.fs.readdir(try env.inode("services/web")).map(\.name).dropFirst(2) == ["spec.json", "status", "endpoint", "log", "control"])
        #expect(try env.text("services/web/status") == "starting\n")
        #expect(try env.text("services/web/endpoint") == "", "no endpoint before it is ready")
        let spec = try JSONSerialization.jsonObject(with: Data(try env.text("services/web/spec.json").utf8)) as? [String: Any]
        #expect(spec?["model"] as? String == "m" && spec?["version"] as? String == "v1.safetensors" && spec?["alias"] is NSNull)
        #expect((spec?["params"] as? [String: String]) == ["max_tokens": "64"])
        let status = try env.fs.getattr(try env.inode("services/web/status"))
        #expect(status.uid == getuid() && status.size == Int64("starting\n".utf8.count))
        #expect(try env.fs.getattr(try env.inode("services/web/control")).permissions == 0o200)
        for file in ["spec.json", "status", "endpoint"] {
            expectStoreError(.notPermitted, "\(file)") { try env.fs.open(try env.inode("services/web/\(file)"), flags: OpenFlags(O_WRONLY)) }
        }
    }

    @Test(arguments: [
        ("model=m version=v9\n", StoreError.Code.notFound, "v9"),
        ("model=m version=@production\n", .notFound, "no alias @production"),
        ("model=x version=v1\n", .notFound, "x"),
        ("model=m\n", .invalidArgument, "names no version"),
        ("model=m version=v1 name=submit\n", .invalidArgument, "taken by a control file"),
    ])
    func aBadRequestFailsItsWriteWithTheReason(request: String, code: StoreError.Code, reason: String) throws {
        let env = try Env()
        let h = try env.fs.open(try env.inode("services/submit"), flags: OpenFlags(O_RDWR)).handle
        let e = storeError { try bytes(request).withUnsafeBytes { b in try Result { () throws(StoreError) in try env.fs.write(h, offset: 0, bytes: b) }.get() } }
        #expect(e?.code == code && e?.message.contains(reason) == true, "\(e?.message ?? "")")
        #expect(String(decoding: try env.fs.read(h, offset: 0, size: 4096), as: UTF8.self).hasPrefix("error: "))
        try env.fs.release(h)
        #expect(try env.registry.services().isEmpty, "nothing recorded")
    }

    @Test func aNameTakenIsEEXIST() throws {
        let env = try Env()
        _ = try env.write("services/submit", "model=m version=v1 name=web\n")
        #expect(storeError { try env.write("services/submit", "model=m version=v1 name=web\n") }?.code == .alreadyExists)
    }

    @Test func onlyItsOwnerOrRootStopsItAndOnlyWithAWordItKnows() throws {
        let env = try Env()
        let alice = RequestContext(uid: 5001, gid: 5002, pid: getpid())
        #expect(try env.write("services/submit", "model=m version=v1 name=hers\n", alice) == "hers\n")
        let s = try #require(try env.registry.service(named: "hers"))
        #expect(s.owner == JobOwner(uid: 5001, gid: 5002))
        #expect(try env.fs.getattr(try env.inode("services/hers")).uid == 5001)
        let bob = RequestContext(uid: 5003, gid: 5003, pid: getpid())
        expectStoreError(.accessDenied) { try env.fs.open(try env.inode("services/hers/control"), flags: OpenFlags(O_WRONLY), bob) }
        #expect(storeError { try env.write("services/hers/control", "pause\n", alice) }?.code == .invalidArgument)
        _ = try env.write("services/hers/control", "stop\n", alice)
        #expect(try env.text("services/hers/status") == "stopping\n", "this mount's runner stops it (no runner thread here)")
        let busy = storeError { try env.write("services/hers/control", "restart\n") }
        #expect(busy?.code == .busy && busy?.message.contains("stopping") == true, "restarted once it has stopped")
    }

    @Test func aMountWithoutAServeCommandListsServicesButStartsNone() throws {
        for env in [try Env(command: nil), try Env(runner: false)] {
            let e = storeError { try env.write("services/submit", "model=m version=v1\n") }
            #expect(e?.code == .notSupported && e?.message.contains("--serve-command") == true)
            #expect(try env.registry.services().isEmpty)
        }
        let other = try Env(runner: false)
        _ = try other.registry.startService(Registry.ServiceStart(model: "m", version: "v1", name: "cli"), executor: "local",
                                            owner: JobOwner(uid: getuid(), gid: getgid()), requester: Actor.process.requester)
        #expect(try other.fs.readdir(try other.inode("services")).map(\.name).contains("cli"))
        #expect(try other.text("services/cli/status") == "starting\n")
    }
}
