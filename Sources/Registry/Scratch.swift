import Foundation
import ModelStore

/// Temporary files of atomic writers (`safetensors.save_file` writes `.tmpXYZ`, then renames it
/// onto `v1.safetensors`): a version row with no format, which the rename turns into a version.
extension Registry {
    /// Starts temporary file `fileName` in `model` (as it was read; the transaction reads it
    /// again by id, and `ENOENT` when it is gone).
    func beginScratch(in model: Model, fileName: String, owner: Ownership? = nil) throws(StoreError) -> ItemUpload {
        guard Names.isScratch(fileName) else { throw .invalid("\(Names.printable(fileName)) is not a temporary file name") }
        let key = try freshObjectKey(Rules.versionKey(model: model.name, fileName: fileName), name: "\(model.name)/\(fileName)", format: "tmp")
        let token = UUID().uuidString
        let (m, v) = try catalog.transaction { tx in
            let m = try Registry.model(tx, model.id)
            var v = try tx.insertVersion(modelID: m.id, name: fileName, format: "", objectKey: key, note: "", lineage: Lineage())
            let o = owner ?? Ownership(uid: Actor.now.uid, gid: Actor.now.gid, mode: Ownership.defaultFileMode)
            try tx.setOwner(.version(v.id), o)
            v.owner = o
            try catalog.claimUpload(tx, versionID: v.id, token: token, writer: writer, node: node)
            return (m, v)
        }
        return ItemUpload(registry: self, item: .version(m, v), token: token, resume: nil, source: nil)
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
