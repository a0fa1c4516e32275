import Foundation
import ModelStore

extension Catalog {
    /// The index stored for the object at `key`, if it describes these bytes (`sha256`, `size`).
    public func archiveIndex(objectKey key: String, sha256: String, size: Int64) throws(StoreError) -> StoredArchiveIndex? {
        let row = try database.read { db in
            try db.first("SELECT sha256, size, body, error FROM archive_indexes WHERE object_key = ?", [.text(key)]) {
                StoredArchiveIndex(sha256: $0.text(0), size: $0.int(1), body: $0.optionalText(2), error: $0.optionalText(3))
            }
        }
        guard let row, row.sha256 == sha256, row.size == size else { return nil }
        return row
    }

    /// Stores an archive's index (or the reason it has none), replacing any older one of the key,
    /// unless the object's row is gone meanwhile.
    public func storeArchiveIndex(objectKey key: String, _ index: StoredArchiveIndex) throws(StoreError) {
        try database.write { db in
            let owned = try db.first("SELECT 1 FROM versions WHERE object_key = ? UNION ALL SELECT 1 FROM datasets WHERE object_key = ?",
                                     [.text(key), .text(key)], { _ in true }) ?? false
            guard owned else { return }
            try db.execute("""
                INSERT INTO archive_indexes (object_key, sha256, size, body, error, created) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (object_key) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, body = excluded.body,
                    error = excluded.error, created = excluded.created
                """, [.text(key), .text(index.sha256), .int(index.size), index.body.map { .text($0) } ?? .null,
                      index.error.map { .text($0) } ?? .null, .date(Date())])
        }
    }
}

extension Catalog {
    /// The safetensors header stored for the file at `key` (`member` "" for the whole object),
    /// if it describes these bytes. The body is the encoded header, or nil with the reason there is none.
    public func tensorHeader(objectKey key: String, member: String, sha256: String, size: Int64) throws(StoreError) -> StoredArchiveIndex? {
        let row = try database.read { db in
            try db.first("SELECT sha256, size, body, error FROM tensor_headers WHERE object_key = ? AND member = ?",
                         [.text(key), .text(member)]) {
                StoredArchiveIndex(sha256: $0.text(0), size: $0.int(1), body: $0.optionalText(2), error: $0.optionalText(3))
            }
        }
        guard let row, row.sha256 == sha256, row.size == size else { return nil }
        return row
    }

    public func storeTensorHeader(objectKey key: String, member: String, _ header: StoredArchiveIndex) throws(StoreError) {
        try database.write { db in
            let owned = try db.first("SELECT 1 FROM versions WHERE object_key = ? UNION ALL SELECT 1 FROM datasets WHERE object_key = ?",
                                     [.text(key), .text(key)], { _ in true }) ?? false
            guard owned else { return }
            try db.execute("""
                INSERT INTO tensor_headers (object_key, member, sha256, size, body, error, created) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (object_key, member) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, body = excluded.body,
                    error = excluded.error, created = excluded.created
                """, [.text(key), .text(member), .text(header.sha256), .int(header.size), header.body.map { .text($0) } ?? .null,
                      header.error.map { .text($0) } ?? .null, .date(Date())])
        }
    }
}
