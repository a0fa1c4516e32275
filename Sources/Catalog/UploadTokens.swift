import Foundation
import ModelStore

/// Each upload claims the row it writes with a token of its own; completing or failing the row
/// is conditioned on it. A handle left over from a deleted or replaced row thus changes nothing.
extension Catalog {
    static func claimed(_ token: String?) -> String { token == nil ? "" : " AND status = 'uploading' AND upload_token = ?" }
    static func claim(_ token: String?) -> [SQLValue] { token.map { [.text($0)] } ?? [] }

    /// Makes `token` the owner of an uploading version or dataset; false when the row is gone or
    /// not uploading.
    public func claimUpload(versionID: VersionID? = nil, datasetID: DatasetID? = nil, token: String) throws(StoreError) -> Bool {
        let (table, id) = versionID.map { ("versions", $0.rawValue) } ?? ("datasets", datasetID?.rawValue ?? -1)
        return try database.write { db in
            try db.execute("UPDATE \(table) SET upload_token = ? WHERE id = ? AND status = 'uploading'", [.text(token), .int(id)]) == 1
        }
    }

    /// Whether `token` still owns the row (checked before an object is completed at its key).
    public func ownsUpload(versionID: VersionID? = nil, datasetID: DatasetID? = nil, token: String) throws(StoreError) -> Bool {
        let (table, id) = versionID.map { ("versions", $0.rawValue) } ?? ("datasets", datasetID?.rawValue ?? -1)
        return try database.read { db in
            try db.first("SELECT 1 FROM \(table) WHERE id = ? AND status = 'uploading' AND upload_token = ?", [.int(id), .text(token)]) { _ in true } ?? false
        }
    }
}

extension Catalog {
    /// A failed version or dataset becomes `uploading` again, for one writer only: of two racing
    /// copies onto it, one gets true.
    public func restartFailedUpload(versionID: VersionID? = nil, datasetID: DatasetID? = nil) throws(StoreError) -> Bool {
        let (table, id) = versionID.map { ("versions", $0.rawValue) } ?? ("datasets", datasetID?.rawValue ?? -1)
        return try database.write { db in
            try db.execute("UPDATE \(table) SET status = 'uploading', error = NULL, sha256 = NULL, size = 0, modified = ? WHERE id = ? AND status = 'failed'",
                           [.date(Date()), .int(id)]) == 1
        }
    }
}

extension Catalog {
    /// Gives a temporary file (a version row with no format) its version name and format, checking
    /// in the same transaction that the name is free under any extension.
    public func adoptScratch(id: VersionID, name: String, format: String) throws(StoreError) {
        try transaction { try $0.adoptScratch(id: id, name: name, format: format) }
    }
}

extension CatalogTransaction {
    /// See ``Catalog/adoptScratch(id:name:format:)``.
    public func adoptScratch(id: VersionID, name: String, format: String) throws {
        guard let modelID = try db.first("SELECT model_id FROM versions WHERE id = ? AND format = ''", [.int(id)], { $0.int(0) }) else {
            throw StoreError.notFound("the temporary file is gone")
        }
        if let other = try db.first("SELECT format FROM versions WHERE model_id = ? AND name = ?", [.int(modelID), .text(name)], { $0.text(0) }) {
            throw StoreError.exists("version \(name) already exists (as \(name).\(other)); versions never change")
        }
        _ = try db.execute("UPDATE versions SET name = ?, format = ?, modified = ? WHERE id = ?",
                           [.text(name), .text(format), .date(Date()), .int(id)])
    }
}
