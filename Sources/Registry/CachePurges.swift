import ModelStore

extension Registry {
    /// What deletes by any process or node left in the caches since purge `id` (``CachePurge``).
    public func cachePurges(after id: Int64) throws(StoreError) -> [CachePurge] { try catalog.cachePurges(after: id) }

    /// The last purge recorded: where a mount that has applied none starts.
    public func lastCachePurge() throws(StoreError) -> Int64 { try catalog.lastCachePurge() }
}
