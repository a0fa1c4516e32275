import ModelStore

extension Registry {
    /// What deletes by any process or node left in the caches since record `id`, and the last
    /// record's id (see `Catalog.cachePurges(after:)`).
    public func cachePurges(after id: Int64) throws(StoreError) -> (through: Int64, purge: Purge) { try catalog.cachePurges(after: id) }

    /// The last record: where a mount that has applied none starts.
    public func lastCachePurge() throws(StoreError) -> Int64 { try catalog.lastCachePurge() }
}
