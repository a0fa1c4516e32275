import Catalog
import Foundation
import Glibc
import Hummingbird
import Jobs
import ModelStore
import Registry

/// The endpoints of `/api/v1`: each resolves names to ids (``StorePort``'s by-name look-ups, as
/// the CLI does) and calls the port as the user who asks, after the rights the kernel checks for
/// a mount (``Rights``). Reads are plain reads of the catalog.
struct API: Sendable {
    static let maximumBody = 1 << 20

    let registry: Registry
    /// Who submits, cancels and logs jobs (API+Jobs.swift): a mount's runner (`mount --web`), one that queues them for a mount (`modelfs web`), or nil.
    var jobs: JobService?
    var port: any StorePort { registry }
    /// The data dir, where the logs of the services this node runs are; nil: none here.
    var dataDirectory: String?

    /// What one request brings to its handler.
    struct Call: Sendable {
        var parameters: [String: String]
        var query: [String: String]
        var body: [UInt8]
        var user: WebUser?
        /// The `Range` header, for a download.
        var range: String?
        /// All the request's headers (an upload's `Content-Length` and `Content-Range`).
        var headers: HTTPFields = [:]

        func parameter(_ name: String) -> String { parameters[name] ?? "" }

        /// The body as `T`; bad JSON is `EINVAL` (400) with what is wrong.
        func decode<T: Decodable>(_ type: T.Type) throws(StoreError) -> T {
            do { return try JSONDecoder().decode(T.self, from: Data(body)) } catch let DecodingError.keyNotFound(key, _) {
                throw .invalid("the body names no \(key.stringValue)")
            } catch let DecodingError.typeMismatch(_, context) {
                throw .invalid("in the body, \(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type")
            } catch {
                throw .invalid("the body is not a JSON object of this request")
            }
        }

        /// Writes need a user (``Authentication`` made sure there is one).
        var who: WebUser {
            get throws(WebError) {
                guard let user else { throw WebError.unauthorized("a change needs a user") }
                return user
            }
        }
    }

    typealias Answer = (HTTPResponse.Status, any Encodable & Sendable)

    /// A route: its method, its path under `/api/v1` with `{names}`, and the method of ``API`` that answers it.
    struct Endpoint: Sendable {
        var method: HTTPRequest.Method
        var path: String
        var handler: @Sendable (API) -> (Call) throws -> Answer
        /// A route that takes its body as it comes (an upload) instead of collected up to ``API/maximumBody``.
        var streamed: (@Sendable (API, Call, RequestBody) async throws -> Answer)?
        /// The `{names}` of its path.
        var parameters: [String] {
            path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
        }
    }

    static let endpoints: [Endpoint] = {
        let e = { (method: HTTPRequest.Method, path: String, handler: @escaping @Sendable (API) -> (Call) throws -> Answer) in
            Endpoint(method: method, path: "/api/v1" + path, handler: handler)
        }
        return [
            e(.get, "/models", API.listModels), e(.post, "/models", API.createModel),
            e(.get, "/models/{model}", API.getModel), e(.patch, "/models/{model}", API.changeModel), e(.delete, "/models/{model}", API.deleteModel),
            e(.get, "/models/{model}/versions", API.listVersions), e(.get, "/models/{model}/next", API.nextVersion),
            e(.get, "/models/{model}/versions/{version}", API.getVersion), e(.patch, "/models/{model}/versions/{version}", API.changeVersion),
            e(.delete, "/models/{model}/versions/{version}", API.deleteVersion),
            e(.get, "/models/{model}/versions/{version}/download", API.download),
            e(.get, "/models/{model}/aliases", API.listAliases), e(.put, "/models/{model}/aliases/{alias}", API.setAlias),
            e(.delete, "/models/{model}/aliases/{alias}", API.removeAlias),
            e(.get, "/datasets", API.listDatasets), e(.get, "/jobs", API.listJobs), e(.get, "/jobs/{job}", API.getJob),
            e(.get, "/services", API.listServices), e(.post, "/services", API.startService),
            e(.post, "/services/{service}/stop", API.stopService), e(.post, "/services/{service}/restart", API.restartService),
            e(.get, "/audit", API.audit), e(.get, "/stats", API.stats),
        ] + API.readEndpoints + API.uploadEndpoints + API.jobEndpoints
    }()

    var rights: Rights { Rights(port: port) }

    /// `body` as `user` (the audit trail's), their rights checked by the caller.
    func acting<R>(_ user: WebUser, _ body: () throws(StoreError) -> R) throws(StoreError) -> R {
        try ModelStore.Actor.acting(actor(user), body)
    }

    /// A web user: this process (the audit trail's pid), with the user's primary group only, as
    /// every other check of the API has it: never the server's own supplementary groups.
    func actor(_ user: WebUser) -> ModelStore.Actor { API.actor(for: user) }

    static func actor(for user: WebUser) -> ModelStore.Actor {
        ModelStore.Actor(uid: user.uid, gid: user.gid, pid: getpid(), groups: [user.gid])
    }

    // MARK: Models

    struct ModelRow: Encodable, Sendable {
        var name: String; var type: ModelType; var note: String; var versions: Int; var bytes: Int64; var created: Date; var modified: Date
        var owner: Ownership?
    }

    func getModel(_ call: Call) throws -> Answer { (.ok, try modelRow(try port.model(called: call.parameter("model")))) }

    struct NewModel: Decodable { var name: String; var type: String?; var note: String? }

    func createModel(_ call: Call) throws -> Answer {
        let user = try call.who
        let body = try call.decode(NewModel.self)
        let type = try ModelType(parsing: body.type ?? "general")
        let owner = Ownership(uid: user.uid, gid: user.gid, mode: Ownership.defaultModelMode)
        let m = try port.createModel(named: body.name, type: type, note: body.note ?? "", owner: owner, by: actor(user))
        return (.created, try modelRow(m))
    }

    struct ModelChange: Decodable { var name: String?; var type: String?; var note: String? }

    func changeModel(_ call: Call) throws -> Answer {
        let user = try call.who
        let body = try call.decode(ModelChange.self)
        var m = try port.model(called: call.parameter("model"))
        if body.type != nil || body.note != nil {
            let type = try body.type.map { (t) throws(StoreError) in try ModelType(parsing: t) }
            try rights.checkAnnotate(m, by: user)
            m = try port.setModel(m.id, type: type, note: body.note, by: actor(user))
        }
        if let name = body.name {
            try rights.checkRemoveModel(m, by: user, "rename")
            m = try port.renameModel(m.id, to: name, by: actor(user))
        }
        return (.ok, try modelRow(m))
    }

    func deleteModel(_ call: Call) throws -> Answer {
        let user = try call.who
        let m = try port.model(called: call.parameter("model"))
        try rights.checkRemoveModel(m, by: user, "delete")
        return (.ok, try modelRow(try port.deleteModel(m.id, by: actor(user)).row))
    }

    // MARK: Versions

    /// A version with the facts its xattrs show: its aliases and its latest evaluation's metrics.
    struct VersionRow: Encodable, Sendable {
        var name: String; var file: String; var format: String; var size: Int64; var sha256: String?; var status: UploadStatus
        var error: String?; var note: String; var owner: Ownership?; var lineage: Lineage; var aliases: [String]
        var metrics: [String: Double]?; var metricsDataset: String?; var created: Date; var modified: Date
    }

    func versionRow(_ v: Version, aliases: [Alias], evaluations: [Evaluation]) -> VersionRow {
        let latest = evaluations.last
        return VersionRow(name: v.name, file: v.fileName, format: v.format, size: v.size, sha256: v.sha256, status: v.status, error: v.error,
                          note: v.note, owner: v.owner, lineage: v.lineage,
                          aliases: aliases.filter { $0.isNamed && $0.versionID == v.id }.map(\.name).sorted(),
                          metrics: latest?.metrics, metricsDataset: latest?.dataset, created: v.created, modified: v.modified)
    }

    func getVersion(_ call: Call) throws -> Answer {
        let m = try port.model(called: call.parameter("model"))
        try rights.checkSearch(m, by: call.user)
        let v = try port.version(called: call.parameter("version"), in: m)
        return (.ok, versionRow(v, aliases: try port.aliases(of: v.modelID), evaluations: try port.evaluations(of: v.id)))
    }

    struct Next: Encodable, Sendable { var version: String }

    func nextVersion(_ call: Call) throws -> Answer {
        try rights.checkSearch(try port.model(called: call.parameter("model")), by: call.user)
        return (.ok, Next(version: try registry.nextVersionName(of: call.parameter("model"))))
    }

    struct VersionChange: Decodable { var name: String?; var note: String? }

    func changeVersion(_ call: Call) throws -> Answer {
        let user = try call.who
        let body = try call.decode(VersionChange.self)
        let m = try port.model(called: call.parameter("model"))
        var v = try port.version(called: call.parameter("version"), in: m)
        if let note = body.note {
            try rights.checkNote(m, v, by: user)
            v = try port.setVersionNote(v.id, note: note, by: actor(user))
        }
        if let name = body.name {
            try rights.checkEntryChange(m, entryOwner: v.owner, by: user, "rename \(m.name)/\(v.fileName)")
            v = try port.renameVersion(v.id, to: (try? Formats.splitVersion(name).name) ?? name, by: actor(user))
        }
        return (.ok, versionRow(v, aliases: try port.aliases(of: m.id), evaluations: try port.evaluations(of: v.id)))
    }

    func deleteVersion(_ call: Call) throws -> Answer {
        let user = try call.who
        let m = try port.model(called: call.parameter("model"))
        let v = try port.version(called: call.parameter("version"), in: m)
        try rights.checkEntryChange(m, entryOwner: v.owner, by: user, "delete \(m.name)/\(v.fileName)")
        let gone = try port.deleteVersion(v.id, by: actor(user)).row
        return (.ok, versionRow(gone, aliases: [], evaluations: []))
    }

    /// Its bytes (a ``Download``): for whoever may read them through the mount (someone without
    /// a user as nobody: what others may read), once ready.
    func download(_ call: Call) throws -> Answer {
        let m = try port.model(called: call.parameter("model"))
        let v = try port.version(called: call.parameter("version"), in: m)
        try rights.checkRead(m, v, by: call.user)
        guard v.status == .ready else {
            throw StoreError(.notReady, "\(m.name)/\(v.fileName) is \(v.status.rawValue)\(v.error.map { ": " + $0 } ?? "")")
        }
        let range = try Download.range(call.range, size: v.size)
        return (range == nil ? .ok : .partialContent,
                Download(objects: registry.objects, key: v.objectKey, fileName: v.fileName, size: v.size, sha256: v.sha256, range: range))
    }

    // MARK: Aliases

    struct AliasRow: Encodable, Sendable { var alias: String; var version: String; var file: String; var modified: Date }

    func aliasRow(_ a: Alias, _ v: Version) -> AliasRow {
        AliasRow(alias: a.name, version: v.name, file: v.linkTarget(view: a.view), modified: a.modified)
    }

    func listAliases(_ call: Call) throws -> Answer {
        try rights.checkList(try port.model(called: call.parameter("model")), by: call.user)
        return (.ok, try registry.aliases(of: call.parameter("model")).filter { $0.alias.isNamed }.map { aliasRow($0.alias, $0.version) })
    }

    struct AliasTarget: Decodable { var version: String }

    func setAlias(_ call: Call) throws -> Answer {
        let user = try call.who
        let body = try call.decode(AliasTarget.self)
        let m = try port.model(called: call.parameter("model"))
        let (v, view) = try port.aliasTarget(body.version, of: m)
        try rights.checkEntryChange(m, entryOwner: nil, by: user, "set an alias of \(m.name)")
        let a = try port.setAlias(in: m.id, named: call.parameter("alias"), to: v.id, view: view, by: actor(user))
        return (.ok, aliasRow(a, v))
    }

    func removeAlias(_ call: Call) throws -> Answer {
        let user = try call.who
        let m = try port.model(called: call.parameter("model"))
        let a = try port.alias(called: call.parameter("alias"), of: m)
        try rights.checkEntryChange(m, entryOwner: nil, by: user, "remove \(m.name)/\(a.name)")
        let removed = try port.removeAlias(a.id, by: actor(user))
        return (.ok, aliasRow(removed, try port.version(of: removed)))
    }

    // MARK: Datasets, jobs, services, the audit trail, stats

    struct DatasetRow: Encodable, Sendable {
        var name: String; var file: String; var format: String; var size: Int64; var records: Int64?; var sha256: String?
        var status: UploadStatus; var error: String?; var note: String; var owner: Ownership?; var created: Date; var modified: Date
    }

    func listDatasets(_ call: Call) throws -> Answer {
        (.ok, try port.datasets().map {
            DatasetRow(name: $0.name, file: $0.fileName, format: $0.format, size: $0.size, records: $0.records, sha256: $0.sha256,
                       status: $0.status, error: $0.error, note: $0.note, owner: $0.owner, created: $0.created, modified: $0.modified)
        })
    }

    func listJobs(_ call: Call) throws -> Answer { (.ok, try port.jobs()) }

    func getJob(_ call: Call) throws -> Answer {
        let name = call.parameter("job")
        guard let job = try port.job(JobID(name)) else { throw StoreError.notFound("no job \(Names.printable(name))") }
        return (.ok, job)
    }

    struct ServiceRow: Encodable, Sendable {
        var name: String; var model: String; var version: String; var alias: String?; var status: ServiceStatus; var reason: String?
        var endpoint: String?; var executor: String; var node: String?; var owner: JobOwner; var params: [String: String]; var created: Date
    }

    func serviceRow(_ s: ModelStore.Service) -> ServiceRow {
        // Each looked up alone: a stopped service's version may be gone, its model not.
        let m = (try? port.model(s.modelID)) ?? nil, v = (try? port.version(s.versionID)) ?? nil
        return ServiceRow(name: s.id.rawValue, model: m?.name ?? "", version: v?.fileName ?? "", alias: s.alias, status: s.status, reason: s.reason,
                          endpoint: s.endpoint, executor: s.executor, node: s.node, owner: s.owner, params: s.params, created: s.created)
    }

    func listServices(_ call: Call) throws -> Answer { (.ok, try port.services().map(serviceRow)) }

    struct NewService: Decodable { var model: String; var version: String; var name: String?; var params: [String: String]? }

    /// Recorded `starting`, for a mount with a serve command to run (as `modelfs serve start`):
    /// the request goes through the same parser as `services/submit`.
    func startService(_ call: Call) throws -> Answer {
        let user = try call.who
        let body = try call.decode(NewService.self)
        var fields = body.params ?? [:]
        for (key, value) in [("model", body.model), ("version", body.version), ("name", body.name)] {
            guard let value else { continue }
            guard fields[key] == nil else { throw StoreError.invalid("\(key) is given twice (in params too)") }
            fields[key] = value
        }
        let request = try ServiceRequest.parse(Array(try JSONSerialization.data(withJSONObject: fields)))
        let s = try acting(user) { () throws(StoreError) in
            try registry.startService(request, executor: "local", owner: JobOwner(uid: user.uid, gid: user.gid),
                                      requester: .user(uid: user.uid, gid: user.gid))
        }
        return (.created, serviceRow(s))
    }

    func stopService(_ call: Call) throws -> Answer {
        let user = try call.who
        let s = try acting(user) { () throws(StoreError) in
            try port.stopService(ServiceID(call.parameter("service")), requester: .user(uid: user.uid, gid: user.gid))
        }
        return (.ok, serviceRow(s))
    }

    func restartService(_ call: Call) throws -> Answer {
        let user = try call.who
        let s = try acting(user) { () throws(StoreError) in
            try port.restartService(ServiceID(call.parameter("service")), requester: .user(uid: user.uid, gid: user.gid))
        }
        return (.ok, serviceRow(s))
    }

    func audit(_ call: Call) throws -> Answer {
        (.ok, try registry.catalog.audit(model: call.query["model"].flatMap { $0.isEmpty ? nil : $0 }))
    }

    func stats(_ call: Call) throws -> Answer { (.ok, try port.stats()) }
}
