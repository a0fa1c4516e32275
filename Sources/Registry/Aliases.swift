import Archive
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

    /// Points `alias` of the model at `version` (a name; `v1/` for an archive version's view; or
    /// another alias, whose target it takes now), making the alias if needed. The version must be ready.
    @discardableResult
    public func setAlias(_ modelName: String, _ alias: String, to version: String) throws(StoreError) -> Alias {
        let name = try Names.alias(alias)
        let a = try catalog.transaction { tx in
            let m = try Registry.model(tx, modelName)
            let (v, view) = try Registry.aliasTarget(tx, m, version)
            try Registry.audit(tx, "alias.set", model: m.name, target: name,
                               "→ \(Registry.linkTarget(v, view: view))")
            return try tx.setAlias(modelID: m.id, name: name, versionID: v.id, view: view)
        }
        publishManifest(a.modelID)
        return a
    }

    /// A link made by `ln -s` in a model's directory: an alias when its name starts with `@`, or
    /// one under `ln -sfn`'s temporary name on its way to an alias (it makes the link, then renames
    /// it onto the alias). Any other name is refused: it would pass for a version or hide a view.
    public func linkAlias(modelID: ModelID, name: String, versionID: VersionID,
                          view: Bool = false) throws(StoreError) -> Alias {
        try Registry.checkLinkName(name)
        let a = try catalog.transaction { tx in
            guard let v = try tx.version(id: versionID), v.modelID == modelID, v.status == .ready else {
                throw StoreError(.invalidArgument, "an alias points at a ready version of its model")
            }
            if view { try Registry.requireView(v) }
            if try tx.alias(modelID: modelID, name: name) != nil { throw StoreError.exists("\(name) exists") }
            if name.hasPrefix("@") {
                try Registry.audit(tx, "alias.set", model: try tx.model(id: modelID)?.name, target: name,
                                   "→ \(Registry.linkTarget(v, view: view))")
            }
            return try tx.setAlias(modelID: modelID, name: name, versionID: v.id, view: view)
        }
        publishManifest(modelID)
        return a
    }

    /// A link's name: `@something`, or `ln -sfn`'s temporary name. Any other would pass for a
    /// version, or hide one's archive view (`EINVAL`).
    public static func checkLinkName(_ name: String) throws(StoreError) {
        if name.hasPrefix("@") {
            _ = try Names.alias(name)
        } else if !Names.isLinkTemporary(name) {
            throw .invalid("links in a model directory are aliases, named @something: "
                           + "\(Names.printable(name)) is not (ln -s v3.zip @production)")
        }
    }

    /// What an alias's link says: the version's file (`v3.zip`), or its archive view (`v3`).
    public static func linkTarget(_ v: Version, view: Bool) -> String { view ? v.name : v.fileName }

    /// Only an archive version has a view for an alias to name.
    static func requireView(_ v: Version) throws(StoreError) {
        guard ArchiveKind(format: v.format) != nil else {
            throw .invalid("\(v.fileName) is no archive: it has no view \(v.name)/ for an alias to name; name the file")
        }
    }

    /// What a new alias names: a version (`v1`, `v1.zip`), an archive version's view (`v1/`), or
    /// what another alias names now (resolved once: the new alias does not follow the other's moves).
    static func aliasTarget(_ tx: CatalogTransaction, _ m: Model, _ target: String) throws -> (Version, view: Bool) {
        if target.hasPrefix("@") {
            guard let a = try tx.alias(modelID: m.id, name: target), let v = try tx.version(id: a.versionID) else {
                throw StoreError.notFound("model \(m.name) has no alias \(target)")
            }
            return (v, a.view)
        }
        guard target.hasSuffix("/") else { return (try resolve(tx, m, target), false) }
        let v = try resolve(tx, m, String(target.dropLast()))
        try requireView(v)
        return (v, true)
    }

    public func removeAlias(_ modelName: String, _ alias: String) throws(StoreError) {
        let raw = alias.hasPrefix("@") ? alias : "@" + alias
        let m = try model(modelName)
        var found = try catalog.alias(modelID: m.id, name: raw)
        if found == nil { found = try catalog.alias(modelID: m.id, name: alias) }
        guard let a = found else {
            throw StoreError.notFound("model \(m.name) has no alias \(raw)")
        }
        _ = try removeAlias(a.id, by: Actor.now)
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
