import Catalog
import Foundation
import HTTPTypes
import Hummingbird
import ModelStore
import Registry

/// The reads the pages need at 1,000 models and 1,000 versions of one: lists a page at a time
/// (keyset paging in the catalog, `Link: rel="next"`), the duplicate check by sha256, compare,
/// evaluations, and a service's log from an offset.
extension API {
    static let readEndpoints: [Endpoint] = {
        let e = { (method: HTTPRequest.Method, path: String, handler: @escaping @Sendable (API) -> (Call) throws -> Answer) in
            Endpoint(method: method, path: "/api/v1" + path, handler: handler)
        }
        return [
            e(.get, "/versions", API.versionsBySHA256), e(.get, "/models/{model}/compare", API.compare),
            e(.get, "/models/{model}/evaluations", API.listEvaluations), e(.get, "/services/{service}/log", API.serviceLog),
        ]
    }()

    // MARK: Pages of a list

    /// `?limit=N&after=NAME`: at most N (default 100, at most 1,000) after NAME. A NAME that is
    /// not (or no longer) there is where it would be: a deleted row does not break the next link.
    struct Paging {
        static let defaultLimit = 100
        static let maximumLimit = 1000
        var limit: Int
        var after: String?

        init(_ query: [String: String]) throws(StoreError) {
            after = query["after"].flatMap { $0.isEmpty ? nil : $0 }
            guard let text = query["limit"], !text.isEmpty else { limit = Paging.defaultLimit; return }
            guard let n = Int(text), (1...Paging.maximumLimit).contains(n) else {
                throw StoreError.invalid("limit is a number from 1 to \(Paging.maximumLimit), not \(Names.printable(text))")
            }
            limit = n
        }
    }

    /// A page of rows: a JSON array, and when more exist a `Link` to the next page (the same
    /// query with `after` the last row's name).
    struct Page<Item: Encodable & Sendable>: Encodable, OwnResponse {
        static var link: HTTPField.Name { HTTPField.Name("Link")! }
        var items: [Item]
        var next: String?

        init(_ items: [Item], next after: String?, path: String, query: [String: String]) {
            self.items = items
            next = after.map { last in
                var fields = query.filter { $0.key != "after" }.sorted { $0.key < $1.key }
                fields.append(("after", last))
                return path + "?" + fields.map { "\(API.encoded($0.key))=\(API.encoded($0.value))" }.joined(separator: "&")
            }
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(items)
        }

        func response() -> Response {
            var r = WebServer.json(.ok, items)
            if let next { r.headers[Page.link] = "<\(next)>; rel=\"next\"" }
            return r
        }
    }

    /// A name as a part of a path or a query: everything but RFC 3986's unreserved characters escaped.
    static func encoded(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? s
    }

    func modelRow(_ s: ModelSummary) -> ModelRow {
        let m = s.model
        return ModelRow(name: m.name, type: m.type, note: m.note, versions: s.versions, bytes: s.readyBytes, created: m.created,
                        modified: m.modified, owner: m.owner)
    }

    /// A model as a list shows it; one just deleted has no versions left.
    func modelRow(_ m: Model) throws(StoreError) -> ModelRow {
        modelRow(try registry.catalog.modelSummary(id: m.id) ?? ModelSummary(model: m, versions: 0, readyBytes: 0))
    }

    func listModels(_ call: Call) throws -> Answer {
        let type = try call.query["type"].flatMap { $0.isEmpty ? nil : $0 }.map { (t) throws(StoreError) in try ModelType(parsing: t) }
        let paging = try Paging(call.query)
        let page = try registry.catalog.modelSummaries(type: type, search: call.query["search"], after: paging.after, limit: paging.limit)
        return (.ok, Page(page.items.map(modelRow), next: page.next, path: "/api/v1/models", query: call.query))
    }

    /// A model's versions a page at a time, with their aliases and latest metrics (read for that
    /// page only), for whoever may list the model's directory.
    func listVersions(_ call: Call) throws -> Answer {
        let m = try port.model(called: call.parameter("model"))
        try rights.checkList(m, by: call.user)
        let paging = try Paging(call.query)
        let page = try registry.catalog.versions(modelID: m.id, after: paging.after, limit: paging.limit)
        let aliases = try port.aliases(of: m.id)
        let evaluations = try page.items.last.map { last throws(StoreError) in
            try registry.catalog.evaluations(modelID: m.id, after: paging.after, through: last.name)
        } ?? [:]
        return (.ok, Page(page.items.map { versionRow($0, aliases: aliases, evaluations: evaluations[$0.id] ?? []) }, next: page.next,
                          path: "/api/v1/models/\(API.encoded(m.name))/versions", query: call.query))
    }

    // MARK: The duplicate check

    struct Holder: Encodable, Sendable { var model: String; var version: String; var size: Int64 }

    /// Ready versions whose content has this sha256, in models the asker may list.
    func versionsBySHA256(_ call: Call) throws -> Answer {
        let given = call.query["sha256"] ?? ""
        let hex = given.lowercased()
        guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit }) else {
            throw StoreError.invalid("sha256 is 64 hexadecimal digits, not '\(Names.printable(given))'")
        }
        let found = try registry.catalog.readyVersions(sha256: hex).filter { m, _ in rights.mayList(m, by: call.user) }
        return (.ok, found.map { m, v in Holder(model: m.name, version: v.name, size: v.size) })
    }

    // MARK: Compare and evaluations

    /// What `modelfs compare --json` prints: `?versions=v1,v2,@production`.
    func compare(_ call: Call) throws -> Answer {
        let m = try port.model(called: call.parameter("model"))
        try rights.checkList(m, by: call.user)
        let versions = (call.query["versions"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !versions.isEmpty else { throw StoreError.invalid("name at least one version: ?versions=v1,v2") }
        return (.ok, try registry.compare(m.name, versions))
    }

    struct EvaluationEntry: Encodable, Sendable {
        var version: String; var file: String; var dataset: String; var job: String?; var metrics: [String: Double]; var created: Date
    }

    /// Every evaluation of the model's versions, by version (listing order), oldest first.
    func listEvaluations(_ call: Call) throws -> Answer {
        let m = try port.model(called: call.parameter("model"))
        try rights.checkList(m, by: call.user)
        let evaluations = try registry.catalog.evaluations(modelID: m.id)
        guard !evaluations.isEmpty else { return (.ok, [EvaluationEntry]()) }
        return (.ok, try port.versions(of: m.id).flatMap { v in
            (evaluations[v.id] ?? []).map {
                EvaluationEntry(version: v.name, file: v.fileName, dataset: $0.dataset, job: $0.job, metrics: $0.metrics, created: $0.created)
            }
        })
    }

    // MARK: A service's log

    /// The log from `?offset=N` (``LogTail``), for its owner or root, as the mount's 0400
    /// `services/<name>/log`; kept on the node that runs the service.
    func serviceLog(_ call: Call) throws -> Answer {
        let name = call.parameter("service")
        guard let s = try port.service(ServiceID(name)) else { throw StoreError.notFound("no service \(Names.printable(name))") }
        let asker = Rights.asker(call.user)
        guard asker.isRoot || asker.uid == s.owner.uid else {
            throw StoreError(.accessDenied, "\(call.user?.name ?? "a request without a user") may not read the log of service \(s.id.rawValue): it is uid \(s.owner.uid)'s")
        }
        let offset = try LogTail.offset(call.query)
        guard let dataDirectory, let tail = LogTail.read(directory: dataDirectory + "/services/" + s.id.rawValue, from: offset) else {
            throw StoreError.notFound("no log of service \(s.id.rawValue) here: it is on the node that runs it")
        }
        return (.ok, tail)
    }
}

extension Rights {
    /// Who asks, as the kernel would see them: a request without a user is nobody.
    static func asker(_ user: WebUser?) -> Ownership.Requester {
        user.map(requester) ?? Ownership.Requester(uid: nobody, groups: [nobody])
    }

    /// Whether `ls models/<m>` works for them: read and search on its directory.
    func mayList(_ m: Model, by user: WebUser?) -> Bool {
        let dir = Rights.directory(m), who = Rights.asker(user)
        return dir.allows(R_OK | X_OK, by: who, isDirectory: true)
    }

    func checkList(_ m: Model, by user: WebUser?) throws(StoreError) {
        guard mayList(m, by: user) else {
            throw StoreError(.accessDenied, "\(user?.name ?? "a request without a user") may not list model \(m.name): mode \(String(Rights.directory(m).mode, radix: 8)) of uid \(Rights.directory(m).uid) says no")
        }
    }
}
