import Foundation
import Glibc
import Jobs
import ModelStore
import ReadPath

/// `services/`: the `submit` control file and one directory per service (spec.json, status,
/// endpoint, log, control). Every mount lists the catalog's services; a mount with a serve
/// command takes and runs them (``ServiceRunner``). See docs/SERVING.md.
final class ServicesProvider: NamespaceProvider {
    unowned let namespace: Namespace
    let parts: Set<TreePart> = [.services]

    init(namespace: Namespace) { self.namespace = namespace }

    private func service(_ number: Int64) throws(StoreError) -> Service {
        guard let s = try store.service(number: number) else { throw .notFound("service \(number) is gone") }
        return s
    }

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        let missing = StoreError.notFound("no such file: \(Names.printable(name))")
        switch parent {
        case .servicesDir:
            if name == "submit" { return .serviceSubmit }
            guard let s = try store.service(ServiceID(name)) else { throw missing }
            return .service(s.number)
        case .service(let number):
            guard let file = ServiceFile(rawValue: name), try store.service(number: number) != nil else { throw missing }
            return .serviceFile(number, file)
        default:
            throw StoreError(.notDirectory, "\(Names.printable(name)): the parent is a file, not a directory")
        }
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        switch node {
        case .serviceSubmit:
            return namespace.file(node, size: 0, modified: namespace.mountTime, permissions: 0o666)
        case .service(let number):
            let s = try service(number)
            return namespace.directory(node, modified: s.created.timeIntervalSince1970, owner: ownership(s, 0o755))
        case .serviceFile(let number, let which):
            let s = try service(number)
            let size: Int64
            let mode: UInt32?
            switch which {
            case .control: size = 0; mode = 0o200
            // What the server printed: its owner's (and root's) to read.
            case .log: size = namespace.services?.logSize(of: s.id) ?? 0; mode = 0o400
            case .spec, .status, .endpoint: size = Int64(content(s, which).count); mode = nil
            }
            var a = namespace.file(node, size: size, modified: s.modified.timeIntervalSince1970, permissions: mode)
            a.uid = s.owner.uid; a.gid = s.owner.gid
            return a
        default:
            return namespace.directory(node)
        }
    }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] {
        switch node {
        case .servicesDir:
            var out = [DirectoryEntry(name: "submit", attributes: try attributes(of: .serviceSubmit))]
            for s in try store.services() {
                out.append(DirectoryEntry(name: s.id.rawValue, attributes: namespace.directory(
                    .service(s.number), modified: s.created.timeIntervalSince1970, owner: ownership(s, 0o755))))
            }
            return out
        case .service(let number):
            return try ServiceFile.allCases.map { (f) throws(StoreError) in
                DirectoryEntry(name: f.rawValue, attributes: try attributes(of: .serviceFile(number, f)))
            }
        default:
            throw StoreError(.notDirectory, "not a directory")
        }
    }

    func parent(of node: Node) throws(StoreError) -> Node {
        switch node {
        case .servicesDir: return .root
        case .serviceFile(let number, _): return .service(number)
        default: return .servicesDir
        }
    }

    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        switch node {
        case .serviceSubmit:
            guard let runner = namespace.services, runner.runsServices else {
                throw StoreError(.notSupported, "this mount runs no services: mount it with --serve-command")
            }
            // A service runs as the user who asks: only a mount run by root can become anyone.
            guard ctx.uid == namespace.uid || namespace.uid == 0 else {
                throw StoreError(.accessDenied, "services run as the user who asks, and this mount (uid \(namespace.uid), not root) cannot run them as uid \(ctx.uid)")
            }
            let owner = JobOwner(uid: ctx.uid, gid: ctx.gid), requester = ctx.actor.requester
            return Opened(file: SubmissionFile(what: "service", logger: namespace.logger) { (bytes) throws(StoreError) in
                try runner.submit(try ServiceRequest.parse(bytes), owner: owner, requester: requester).id.rawValue
            }, directIO: true)
        case .serviceFile(let number, let which):
            let s = try service(number)
            switch which {
            case .control:
                guard flags.wantsWrite else { throw StoreError(.notPermitted, "control is written to: echo stop > control") }
                guard ctx.uid == s.owner.uid || ctx.uid == 0 else {
                    throw StoreError(.accessDenied, "service \(s.id) is uid \(s.owner.uid)'s: only they or root stop or restart it")
                }
                return Opened(file: ServiceControlFile(namespace: namespace, service: s.id), directIO: true)
            case .log:
                if flags.wantsWrite { throw StoreError(.notPermitted, "the log is written by the service") }
                guard let runner = namespace.services else { return Opened(file: ContentFile([]), directIO: true) }
                return Opened(file: ServiceLogFile(runner: runner, service: s.id), directIO: true)
            case .spec, .status, .endpoint:
                if flags.wantsWrite { throw StoreError(.notPermitted, "\(which.rawValue) is read-only") }
                return Opened(file: ContentFile(content(s, which)), directIO: true)
            }
        default:
            throw StoreError(.isDirectory, "is a directory")
        }
    }

    func acceptsWrites(_ node: Node) throws(StoreError) -> Bool {
        switch node {
        case .serviceSubmit, .serviceFile(_, .control): return true
        default: return false
        }
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .serviceSubmit: return "services/submit"
        case .service(let number): return "services/" + (((try? store.service(number: number)) ?? nil)?.id.rawValue ?? "\(number)")
        case .serviceFile(let number, let file): return describe(.service(number)) + "/" + file.rawValue
        default: return "services"
        }
    }

    func content(_ s: Service, _ which: ServiceFile) -> [UInt8] {
        switch which {
        case .status:
            return Array((s.status.rawValue + "\n" + (s.reason.map { $0 + "\n" } ?? "")).utf8)
        case .endpoint:
            return s.status == .ready ? Array(((s.endpoint ?? "") + "\n").utf8) : []
        case .spec:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            let version = ((try? store.version(s.versionID)) ?? nil)?.fileName
            let model = ((try? store.model(s.modelID)) ?? nil)?.name
            return Array((try? encoder.encode(ServiceSpec(s, model: model, version: version))) ?? Data()) + [0x0A]
        default:
            return []
        }
    }

    func ownership(_ s: Service, _ mode: UInt32) -> Ownership { Ownership(uid: s.owner.uid, gid: s.owner.gid, mode: mode) }
}

/// What `services/<name>/spec.json` says: what was asked, and the version served now.
struct ServiceSpec: Encodable {
    var name: String
    var model: String?
    var version: String?
    var alias: String?
    var params: [String: String]
    var executor: String
    var owner: JobOwner
    var created: Date
    init(_ s: Service, model: String?, version: String?) {
        name = s.id.rawValue; self.model = model; self.version = version; alias = s.alias; params = s.params
        executor = s.executor; owner = s.owner; created = s.created
    }
    enum CodingKeys: String, CodingKey { case name, model, version, alias, params, executor, owner, created }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(model, forKey: .model)
        try c.encode(version, forKey: .version)
        try c.encode(alias, forKey: .alias)  // null for a service of one version
        try c.encode(params, forKey: .params)
        try c.encode(executor, forKey: .executor)
        try c.encode(owner, forKey: .owner)
        try c.encode(created, forKey: .created)
    }
}

/// `services/<name>/control`: `echo stop > control`, `echo restart > control`.
final class ServiceControlFile: OpenFile {
    unowned let namespace: Namespace
    let service: ServiceID
    init(namespace: Namespace, service: ServiceID) { self.namespace = namespace; self.service = service }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply { .bytes([]) }

    func write(offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext) throws(StoreError) -> Int {
        let word = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let requester = ctx.actor.requester
        // The rule is the catalog's: any mount takes the request, the node running the service acts on it.
        try Actor.acting(ctx.actor) { () throws(StoreError) in
            switch word {
            case "stop": try namespace.store.stopService(service, requester: requester)
            case "restart": try namespace.store.restartService(service, requester: requester)
            default: throw StoreError(.invalidArgument, "write stop or restart to control")
            }
        }
        namespace.services?.poke()
        return bytes.count
    }
}

/// `services/<name>/log`, read live.
final class ServiceLogFile: OpenFile {
    let runner: ServiceRunner
    let service: ServiceID
    init(runner: ServiceRunner, service: ServiceID) { self.runner = runner; self.service = service }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply {
        .bytes(runner.readLog(of: service, offset: offset, size: size))
    }
}
