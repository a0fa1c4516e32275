/// What one deleted version or dataset leaves in the caches of every node: its bytes, named as
/// the caches name them (sha256 and size, or the key while no sha256 is known), and its archive
/// view. The delete records it in the catalog in its own transaction, so a delete by any process
/// (the CLI, a mount, another node) reaches every mount, which drops what it holds (memory, disk
/// cache, archive indexes) when it reads the record.
public struct CachePurge: Sendable, Equatable {
    /// Increasing in commit order (the catalog lets one writer in at a time).
    public var id: Int64
    public var objectKey: String
    public var sha256: String?
    public var size: Int64
    public var versionID: Int64?
    public var datasetID: Int64?

    public init(id: Int64, objectKey: String, sha256: String?, size: Int64, versionID: Int64?, datasetID: Int64?) {
        self.id = id; self.objectKey = objectKey; self.sha256 = sha256; self.size = size
        self.versionID = versionID; self.datasetID = datasetID
    }
}
