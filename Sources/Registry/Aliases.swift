import Catalog
import Foundation
import ModelStore

/// Aliases: `@production` of a model names one of its versions, and moves in one transaction.
/// A version an alias points at is not deleted (`EBUSY`, naming the alias). Aliases are in the
/// model's manifest, so `recover` restores them.
extension Registry {
    /// The model's aliases with the versions they point at.
    public func aliases(of modelName: String) throws(StoreError) -> [(alias: Alias, version: Version)] {
        let m = try model(modelName)
        var out: [(alias: Alias, version: Version)] = []
        for a in try catalog.aliases(modelID: m.id) {
            if let v = try catalog.version(id: a.versionID) { out.append((a, v)) }
        }
        return out
    }

    /// Points `alias` of the model at `version` (a name, or another alias), making the alias if
    /// needed. The version must be ready.
    @discardableResult
    public func setAlias(_ modelName: String, _ alias: String, to version: String) throws(StoreError) -> Alias {
        let name = try Names.alias(alias)
        let a = try catalog.transaction { tx in
            let m = try Registry.model(tx, modelName)
            let v = try Registry.resolve(tx, m, version)
            try Registry.audit(tx, "alias.set", model: m.name, target: name, "→ \(v.fileName)")
            return try tx.setAlias(modelID: m.id, name: name, versionID: v.id)
        }
        publishManifest(a.modelID)
        return a
    }

    /// A link made by `ln -s` in a model's directory: an alias when its name starts with `@`,
    /// else one on its way to a name (`ln -sf` makes it under a temporary name, then renames it).
    public func linkAlias(modelID: Int64, name: String, versionID: Int64) throws(StoreError) -> Alias {
        if name.hasPrefix("@") { _ = try Names.alias(name) } else { try Names.validate(name, what: "link name") }
        let a = try catalog.transaction { tx in
            guard let v = try tx.version(id: versionID), v.modelID == modelID, v.status == .ready else {
                throw StoreError(.invalidArgument, "an alias points at a ready version of its model")
            }
            if try tx.alias(modelID: modelID, name: name) != nil { throw StoreError.exists("\(name) exists") }
            if name.hasPrefix("@") { try Registry.audit(tx, "alias.set", model: try tx.model(id: modelID)?.name, target: name, "→ \(v.fileName)") }
            return try tx.setAlias(modelID: modelID, name: name, versionID: v.id)
        }
        publishManifest(modelID)
        return a
    }

    public func removeAlias(_ modelName: String, _ alias: String) throws(StoreError) {
        let raw = alias.hasPrefix("@") ? alias : "@" + alias
        let m = try catalog.transaction { tx in
            let m = try Registry.model(tx, modelName)
            guard let a = try tx.alias(modelID: m.id, name: raw) ?? tx.alias(modelID: m.id, name: alias) else {
                throw StoreError.notFound("model \(m.name) has no alias \(raw)")
            }
            try tx.deleteAlias(id: a.id)
            try Registry.audit(tx, "alias.remove", model: m.name, target: a.name)
            return m
        }
        publishManifest(m.id)
    }

    /// Renames alias `from` to `to`, replacing the alias of that name if there is one: how
    /// `ln -sfn` and `mv new-link @production` move an alias in one step.
    public func renameAlias(modelID: Int64, _ from: String, to: String) throws(StoreError) {
        guard to.hasPrefix("@") else { throw .invalid("an alias's name starts with @: \(Names.printable(to)) is not one") }
        let name = try Names.alias(to)
        try catalog.transaction { tx in
            guard let a = try tx.alias(modelID: modelID, name: from) else { throw StoreError.notFound("no alias \(from)") }
            _ = try tx.renameAlias(a, to: name)
            let target = try tx.version(id: a.versionID)?.fileName ?? "?"
            try Registry.audit(tx, "alias.set", model: try tx.model(id: modelID)?.name, target: name, "→ \(target)")
        }
        publishManifest(modelID)
    }

    /// A version by name, or by an alias's name (`@production`).
    static func resolve(_ tx: CatalogTransaction, _ m: Model, _ version: String) throws -> Version {
        if version.hasPrefix("@") {
            guard let a = try tx.alias(modelID: m.id, name: version), let v = try tx.version(id: a.versionID) else {
                throw StoreError.notFound("model \(m.name) has no alias \(version)")
            }
            return v
        }
        guard let v = try tx.version(modelID: m.id, name: version) else { throw noVersion(m.name, version) }
        guard v.status == .ready else { throw StoreError(.notReady, "\(m.name)/\(v.fileName) is \(v.status.rawValue)") }
        return v
    }

    /// The version `version` names now (resolving an alias), for jobs and the CLI.
    public func resolveVersion(_ modelName: String, _ version: String) throws(StoreError) -> Version {
        try catalog.transaction { tx in try Registry.resolve(tx, try Registry.model(tx, modelName), version) }
    }
}
