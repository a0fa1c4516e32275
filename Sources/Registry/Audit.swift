import Catalog
import Foundation
import ModelStore

/// The audit trail: each change the registry makes is recorded, in its transaction, with who
/// made it (``Actor/now``).
extension Registry {
    static func audit(_ tx: CatalogTransaction, _ action: String, model: String?, target: String? = nil, _ detail: String = "") throws {
        let who = Actor.now
        try tx.record(AuditEntry(uid: who.uid, pid: who.pid, action: action, model: model, target: target, detail: detail))
    }

    /// A note as the trail shows it: quoted, on one line, cut at 200 characters.
    static func quoted(_ text: String) -> String {
        let line = text.replacingOccurrences(of: "\n", with: "\\n")
        return "\"" + (line.count > 200 ? line.prefix(200) + "…" : line) + "\""
    }

    /// The line for an upload that failed: it is its owner's (who began it), whichever process
    /// found it failed (the mount for a user's copy, a sweep for a writer that is gone).
    static func failure(_ action: String, model: String?, target: String, owner: Ownership?,
                        reason: String) -> AuditEntry {
        let who = Actor.now
        let uid = owner?.uid ?? who.uid
        return AuditEntry(uid: uid, pid: uid == who.uid ? who.pid : nil, action: action, model: model, target: target,
                          detail: reason)
    }

    /// For changes made outside a transaction of the registry's.
    func audit(_ action: String, model: String?, target: String? = nil, _ detail: String = "") {
        do {
            try catalog.transaction { tx in try Registry.audit(tx, action, model: model, target: target, detail) }
        } catch {
            logger.warning("audit line \(action) not recorded: \(error)")
        }
    }

    /// Sets the owner and mode of a model, version or dataset (`chmod`, `chown`, `chgrp`), by
    /// the rules of ``Ownership/changed(mode:uid:gid:by:isFile:what:)``, in one transaction.
    @discardableResult
    public func changeOwnership(_ row: OwnedRow, mode: UInt32?, uid: UInt32?, gid: UInt32?,
                                defaultOwner: Ownership) throws(StoreError) -> Ownership {
        let who = Actor.now
        let (changed, entry, modelID) = try catalog.transaction { tx -> (Ownership, Bool, ModelID?) in
            let current: Ownership
            let what: String
            var model: String?
            var target: String?
            var modelID: ModelID?
            switch row {
            case .model(let id):
                guard let m = try tx.model(id: id) else { throw StoreError.notFound("the model is gone") }
                current = m.owner ?? defaultOwner; what = "models/\(m.name)"; model = m.name; modelID = m.id
            case .version(let id):
                guard let v = try tx.version(id: id), let m = try tx.model(id: v.modelID) else { throw StoreError.notFound("the version is gone") }
                current = v.owner ?? defaultOwner; what = "\(m.name)/\(v.fileName)"; model = m.name; target = v.fileName; modelID = m.id
            case .dataset(let id):
                guard let d = try tx.dataset(id: id) else { throw StoreError.notFound("the dataset is gone") }
                current = d.owner ?? defaultOwner; what = "datasets/\(d.fileName)"; target = d.fileName
            }
            let next = try current.changed(mode: mode, uid: uid, gid: gid, by: who.requester, isFile: row.isFile, what: what)
            guard next != current else { return (current, false, nil) }
            try tx.setOwner(row, next)
            try Registry.audit(tx, row.auditAction,
                               model: model, target: target,
                               "uid \(current.uid)→\(next.uid) gid \(current.gid)→\(next.gid) mode \(String(current.mode, radix: 8))→\(String(next.mode, radix: 8))")
            return (next, true, modelID)
        }
        if entry {
            switch row {
            case .model: if let modelID { publishManifest(modelID) }
            case .version(let id): publishVersionEntry(id)
            case .dataset: publishDatasetsManifest()
            }
        }
        return changed
    }
}

extension OwnedRow {
    var isFile: Bool { if case .model = self { false } else { true } }
    var auditAction: String {
        switch self {
        case .model: "model.chown"
        case .version: "version.chown"
        case .dataset: "dataset.chown"
        }
    }
}
