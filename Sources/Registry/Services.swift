import Catalog
import Foundation
import Glibc
import ModelStore

/// Services' rules: who may start, stop and restart one, what it may serve, and the runner's
/// steps — each checked and applied in one catalog transaction, whoever asks (the mount's
/// `services/` files, the CLI, the runner that follows it).
extension Registry {
    /// What a request to start a service asks for, once parsed.
    public struct ServiceStart: Sendable {
        public var model: String
        /// A version's name (`v1`, or `v1.safetensors`) or an alias (`@production`), which the service then follows.
        public var version: String
        public var name: ServiceID?
        public var params: [String: String]
        public init(model: String, version: String, name: ServiceID? = nil, params: [String: String] = [:]) {
            self.model = model; self.version = version; self.name = name; self.params = params
        }
    }

    public func service(named name: ServiceID) throws(StoreError) -> Service? { try catalog.service(named: name) }
    public func service(number: Int64) throws(StoreError) -> Service? { try catalog.service(number: number) }
    public func services() throws(StoreError) -> [Service] { try catalog.services() }

    /// Records a new service, `starting`, for a mount with a serve command to take. `ENOENT` for an
    /// unknown model, version or alias, `EBUSY` for a version not ready, `EACCES` when the asker
    /// may not read it, `EEXIST` for a name taken.
    /// `node`: the node that takes it (a mount's own request); nil leaves it to any mount with a serve command.
    public func startService(_ request: ServiceStart, executor: String, owner: JobOwner,
                             requester: Ownership.Requester, node: String? = nil) throws(StoreError) -> Service {
        if let name = request.name { try Registry.validateServiceName(name.rawValue) }
        let versionName = request.version.hasPrefix("@") ? request.version
            : (try? Formats.splitVersion(request.version).name) ?? request.version
        return try catalog.transaction { tx in
            let (m, v) = try Registry.version(tx, request.model, versionName)
            try Registry.checkMayServe(m, v, by: requester)
            let alias = versionName.hasPrefix("@") ? versionName : nil
            let id = try request.name ?? Registry.freeServiceName(tx, prefix: "\(m.name)-\(alias.map { String($0.dropFirst()) } ?? v.name)-")
            var s = try tx.insertService(Service(id: id, modelID: m.id, versionID: v.id, alias: alias, params: request.params, owner: owner,
                                                 status: .starting, executor: executor, created: Date()))
            if let node {
                s.node = node
                try tx.updateService(s)
            }
            try Registry.audit(tx, "service.start", model: m.name, target: id.rawValue, "\(alias.map { $0 + " → " } ?? "")\(v.fileName) on \(executor)")
            return s
        }
    }

    /// Asks for a service to stop; `EACCES` for anyone but its owner and root, `EINVAL` when it
    /// has already ended. One that no mount has taken yet is stopped at once.
    @discardableResult
    public func stopService(_ name: ServiceID, requester: Ownership.Requester) throws(StoreError) -> Service {
        try changeService(name, audit: "service.stop") { (s) throws(StoreError) in
            try Registry.checkMayControl(s, by: requester, "stop")
            switch s.status {
            case .stopped, .failed: throw StoreError.invalid("service \(s.id) is already \(s.status.rawValue)")
            case .stopping: return
            case .starting, .ready: s.status = s.node == nil ? .stopped : .stopping
            }
        }
    }

    /// Starts a service again: a new instance on the version it serves (for one following an
    /// alias, the alias's version now). A running one is replaced by the mount that runs it; a
    /// stopped or failed one goes to any mount with a serve command.
    @discardableResult
    public func restartService(_ name: ServiceID, requester: Ownership.Requester) throws(StoreError) -> Service {
        try changeService(name, audit: "service.restart") { (s, tx) throws(StoreError) in
            try Registry.checkMayControl(s, by: requester, "restart")
            if s.status == .stopping { throw StoreError(.busy, "service \(s.id) is stopping: restart it once it has stopped") }
            do {
                var v = try tx.version(id: s.versionID)
                if let alias = s.alias, let a = try tx.alias(modelID: s.modelID, name: alias) { v = try tx.version(id: a.versionID) }
                guard let v, let m = try tx.model(id: s.modelID) else { throw StoreError.notFound("the version service \(s.id) served is gone") }
                try Registry.checkMayServe(m, v, by: Ownership.Requester.user(uid: s.owner.uid, gid: s.owner.gid))
                if s.status == .stopped || s.status == .failed {
                    s.versionID = v.id
                    s.node = nil
                    s.endpoint = nil
                }
            } catch let e as StoreError { throw e } catch { throw StoreError(.io, "\(error)") }
            s.status = .starting
            s.reason = nil
            s.refusedVersionID = nil
            s.generation += 1
        }
    }

    /// One step of the runner's, or a rule's change: `change` sees the row as it is in the
    /// transaction and changes it (or throws, or returns `false` to leave it); the row is written
    /// and the step recorded in the audit trail (when `audit` names it) in that transaction.
    @discardableResult
    public func changeService(_ name: ServiceID, audit: String? = nil, detail: String? = nil,
                              _ change: (inout Service, CatalogTransaction) throws(StoreError) -> Void) throws(StoreError) -> Service {
        try catalog.transaction { tx in
            guard var s = try tx.service(named: name) else { throw StoreError.notFound("no service \(name)") }
            let before = s
            do { try change(&s, tx) } catch let e as StoreError { throw e }
            guard s != before else { return s }
            try tx.updateService(s)
            if let audit, let m = try tx.model(id: s.modelID) {
                try Registry.audit(tx, audit, model: m.name, target: s.id.rawValue, detail ?? s.reason ?? s.status.rawValue)
            }
            return s
        }
    }

    public func changeService(_ name: ServiceID, audit: String? = nil, detail: String? = nil,
                              _ change: (inout Service) throws(StoreError) -> Void) throws(StoreError) -> Service {
        try changeService(name, audit: audit, detail: detail) { (s: inout Service, _: CatalogTransaction) throws(StoreError) in try change(&s) }
    }

    /// The version a service following an alias should serve now: the alias's, if it moved to a
    /// ready version other than the one served (and not one a switch already failed to).
    public func switchTarget(of s: Service) throws(StoreError) -> (Model, Version)? {
        guard let alias = s.alias, s.status == .ready, s.nextVersionID == nil else { return nil }
        return try catalog.transaction { tx -> (Model, Version)? in
            guard let a = try tx.alias(modelID: s.modelID, name: alias), a.versionID != s.versionID, a.versionID != s.refusedVersionID,
                  let v = try tx.version(id: a.versionID), v.status == .ready, let m = try tx.model(id: s.modelID) else { return nil }
            return (m, v)
        }
    }

    /// The model and version a service serves (or is switching to).
    public func served(_ s: Service, next: Bool = false) throws(StoreError) -> (Model, Version) {
        try catalog.transaction { tx in try Registry.version(tx, next ? s.nextVersionID ?? s.versionID : s.versionID) }
    }

    /// A service reads its version through the mount as its user: `x` on the model, `r` on the version.
    static func checkMayServe(_ m: Model, _ v: Version, by who: Ownership.Requester) throws(StoreError) {
        guard v.status == .ready else { throw StoreError(.busy, "\(m.name)/\(v.fileName) is \(v.status.rawValue), not ready") }
        let dir = m.owner ?? Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultModelMode)
        let file = v.owner ?? Ownership(uid: getuid(), gid: getgid(), mode: Ownership.defaultFileMode)
        guard dir.allows(.search, to: who), file.allows(.read, to: who) else {
            throw StoreError(.accessDenied, "uid \(who.uid) may not read \(m.name)/\(v.fileName): a service serves only what its user may read")
        }
    }

    static func checkMayControl(_ s: Service, by who: Ownership.Requester, _ what: String) throws(StoreError) {
        guard who.isRoot || who.uid == s.owner.uid else {
            throw StoreError(.accessDenied, "service \(s.id) is uid \(s.owner.uid)'s: only they or root \(what) it")
        }
    }

    /// What a queued or running service holds is not deleted (`EBUSY`, naming the service).
    static func refuseIfServed(_ services: [Service], _ what: String) throws {
        if let s = services.first { throw StoreError(.busy, "\(what) is served by service \(s.id), which is \(s.status.rawValue): stop it first") }
    }

    /// Names a service cannot take: the files beside and inside service directories.
    public static let reservedServiceNames: Set<String> = ["submit", "spec.json", "status", "endpoint", "log", "control"]

    public static func validateServiceName(_ name: String) throws(StoreError) {
        try Names.validate(name, what: "service name")
        if reservedServiceNames.contains(name) { throw .invalid("service name '\(name)' is taken by a control file in services/") }
    }

    static func freeServiceName(_ tx: CatalogTransaction, prefix: String) throws -> ServiceID {
        var n = 1
        while try tx.service(named: ServiceID(prefix + "\(n)")) != nil { n += 1 }
        return ServiceID(prefix + "\(n)")
    }
}
