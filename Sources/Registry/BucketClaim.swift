import Foundation
import ModelStore
import Catalog

/// `.catalog/.owner.json`: the catalog a bucket belongs to. One bucket, one catalog: two
/// catalogs on one bucket would overwrite each other's objects, and each one's `gc` would take
/// the other's versions for orphans.
public struct BucketOwner: Codable, Equatable, Sendable {
    public var formatVersion = 1
    public var catalog: String
    public var host: String
    /// The catalog file that claimed the bucket, to tell the operator where it is.
    public var db: String
    public var claimed: Date
}

extension Registry {
    public enum Claim: Equatable, Sendable {
        /// The bucket already belonged to this catalog.
        case owned
        /// The bucket belonged to no catalog; now it belongs to this one.
        case claimed
        /// This (empty) catalog took over the id the bucket records (recovery).
        case adopted
    }

    /// The catalog the bucket records, if any.
    public func bucketOwner() throws(StoreError) -> BucketOwner? {
        guard let bytes = try optionalObject(Rules.ownerKey) else { return nil }
        do { return try ManifestCoding.decode(bytes) } catch {
            throw StoreError(.io, "\(Rules.ownerKey) in \(objects.location) is not a modelfs owner record: \(error)")
        }
    }

    /// Checks that the bucket (`what`, for messages: "bucket models") belongs to this catalog,
    /// claiming it when it belongs to none. With `adopt`, an empty catalog takes over the id the
    /// bucket records instead of being refused (`modelfs recover`: it is the same store).
    @discardableResult
    public func claimBucket(_ what: String, adopt: Bool = false) throws(StoreError) -> Claim {
        let id = try catalog.catalogID()
        let recorded: BucketOwner?
        do { recorded = try bucketOwner() } catch where error.code == .io {
            // Object storage down: a bucket this catalog checked before is still its own (the
            // catalog keeps working from SQLite); a bucket never checked cannot be used blind.
            guard try catalog.meta("claimed") == what else { throw error }
            logger.warning("could not check who owns \(what) (\(error.message)); it was this catalog's")
            return .owned
        }
        if let owner = recorded {
            if owner.catalog == id {
                if try catalog.meta("claimed") != what { try catalog.setMeta("claimed", what) }
                return .owned
            }
            if adopt, try catalog.isEmpty() {
                try catalog.adoptCatalogID(owner.catalog)
                try catalog.setMeta("claimed", what)
                return .adopted
            }
            throw foreign(what, owner: owner, id: id)
        }
        let owner = BucketOwner(catalog: id, host: Writer.hostname(), db: catalog.location, claimed: Date())
        do { try objects.put(Rules.ownerKey, ManifestCoding.encode(owner)) } catch { throw error.storeError }
        // Two catalogs claiming at once: the one whose claim landed last keeps the bucket, the
        // other reads that claim back and is refused (object storage has no create-if-absent
        // that every S3 server implements).
        if let back = try bucketOwner(), back.catalog != id { throw foreign(what, owner: back, id: id) }
        try catalog.setMeta("claimed", what)
        return .claimed
    }

    private func foreign(_ what: String, owner: BucketOwner, id: String) -> StoreError {
        StoreError(.notPermitted, """
            \(what) belongs to catalog \(owner.catalog) (\(owner.db) on \(owner.host)), not to this catalog \(id) \
            (\(catalog.location)): a bucket belongs to one catalog; use another bucket, or recover into \
            an empty data dir (modelfs recover) to take this one over
            """)
    }
}
