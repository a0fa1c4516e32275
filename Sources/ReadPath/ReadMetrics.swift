import Metrics

/// What the read path counts for `/metrics`: bytes brought in from object storage (or the local
/// store's files) and from the disk cache, bytes served from blocks already in memory
/// (`modelfs_read_bytes_total{source}`), and lookups in each cache (`modelfs_cache_lookups_total
/// {cache,result}`). Made once per cache; counted per read request or per fetched range, never
/// per block, so a read costs a few atomic adds.
struct ReadMetrics: Sendable {
    let objectStoreBytes = ReadMetrics.bytes("object_store")
    let memoryBytes = ReadMetrics.bytes("memory")
    let diskBytes = ReadMetrics.bytes("disk")
    let memoryHits = ReadMetrics.lookups("memory", "hit")
    let memoryMisses = ReadMetrics.lookups("memory", "miss")
    let diskHits = ReadMetrics.lookups("disk", "hit")
    let diskMisses = ReadMetrics.lookups("disk", "miss")

    static func bytes(_ source: String) -> Counter {
        Counter(label: "modelfs_read_bytes_total", dimensions: [("source", source)])
    }

    static func lookups(_ cache: String, _ result: String) -> Counter {
        Counter(label: "modelfs_cache_lookups_total", dimensions: [("cache", cache), ("result", result)])
    }
}
