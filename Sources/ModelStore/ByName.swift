/// The CLI and the HTTP API name rows; the port (``StorePort``) takes ids. These find a row by its name (one read)
/// so that a command calls the port with the row's id: every rule is the port's, checked in its
/// transaction. A row renamed between the look-up and the change is still the one changed; one
/// deleted meanwhile is `ENOENT`.
extension StorePort {
    public func model(called name: String) throws(StoreError) -> Model {
        guard let m = try model(named: name) else { throw .notFound("no model named \(Names.printable(name))") }
        return m
    }

    /// A version by its name (`v1`, `v1.zip`) or by an alias (`@production`: the version it names now).
    public func version(called name: String, of modelName: String) throws(StoreError) -> Version {
        try version(called: name, in: try model(called: modelName))
    }

    public func version(called name: String, in m: Model) throws(StoreError) -> Version {
        if name.hasPrefix("@") { return try version(of: alias(called: name, of: m)) }
        guard let v = try version(in: m.id, named: (try? Formats.splitVersion(name).name) ?? name) else {
            throw .notFound("model \(m.name) has no version \(Names.printable(name))")
        }
        return v
    }

    /// An alias by its name, with or without its `@`.
    public func alias(called name: String, of m: Model) throws(StoreError) -> Alias {
        let named = name.hasPrefix("@") ? name : "@" + name
        var found = try alias(in: m.id, named: named)
        if found == nil { found = try alias(in: m.id, named: name) }
        guard let a = found else {
            throw .notFound("model \(m.name) has no alias \(Names.printable(named))")
        }
        return a
    }

    public func version(of a: Alias) throws(StoreError) -> Version {
        guard let v = try version(a.versionID) else { throw .notFound("\(a.name) names a version that is gone") }
        return v
    }

    /// A dataset by its name (`qa`, `qa.jsonl`).
    public func dataset(called name: String) throws(StoreError) -> Dataset {
        guard let d = try dataset(named: (try? Formats.splitDataset(name).name) ?? name) else {
            throw .notFound("no dataset named \(Names.printable(name))")
        }
        return d
    }

    /// What `modelfs alias set` points at: a version (`v3`, `v3.zip`), an archive version's view
    /// (`v3/`), or what another alias names now (taken once: the new alias does not follow it).
    public func aliasTarget(_ target: String, of m: Model) throws(StoreError) -> (Version, view: Bool) {
        if target.hasPrefix("@") {
            let a = try alias(called: target, of: m)
            return (try version(of: a), a.view)
        }
        let view = target.hasSuffix("/")
        return (try version(called: view ? String(target.dropLast()) : target, in: m), view)
    }
}
