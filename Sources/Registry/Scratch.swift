import ModelStore

/// Temporary files of atomic writers (`safetensors.save_file` writes `.tmpXYZ`, then renames it
/// onto `v1.safetensors`): a version row with no format, which the rename turns into a version.
extension Registry {
    public func beginScratchVersion(model modelName: String, fileName: String, owner: Ownership? = nil) throws(StoreError) -> ItemUpload {
        guard Names.isScratch(fileName) else { throw .invalid("\(Names.printable(fileName)) is not a temporary file name") }
        let m = try model(modelName)
        let key = try freshObjectKey(Rules.versionKey(model: m.name, fileName: fileName), name: "\(m.name)/\(fileName)", format: "tmp")
        let v = try catalog.transaction { tx in
            var v = try tx.insertVersion(modelID: m.id, name: fileName, format: "", objectKey: key, note: "", lineage: Lineage())
            let o = owner ?? Ownership(uid: Actor.now.uid, gid: Actor.now.gid, mode: Ownership.defaultFileMode)
            try tx.setOwner(.version(v.id), o)
            v.owner = o
            return v
        }
        return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: nil)
    }

    /// Renames a temporary file to a version's name and format, refused (`EEXIST`) when the model
    /// has a version of that name already.
    public func adoptScratch(_ modelName: String, _ scratch: String, as name: String, format: String) throws(StoreError) {
        try Names.validate(name, what: "version name")
        let (_, v) = try version(modelName, scratch)
        guard v.isScratch else { throw .invalid("\(v.fileName) is not a temporary file") }
        try catalog.adoptScratch(id: v.id, name: name, format: format)
        audit("version.create", model: modelName, target: name + "." + format, "renamed from \(scratch)")
        publishVersionEntry(v.id)
    }
}
