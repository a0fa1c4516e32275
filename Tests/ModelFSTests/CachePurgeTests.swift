import Foundation
import Testing
import BlobStore
import Catalog
import ModelStore
import ReadPath
import ModelFS

/// A delete by another process or node (what `modelfs version rm` does) reaches a mount's caches
/// through the purges the delete recorded in the catalog.
@Suite struct CachePurgeTests {
    @Test(arguments: Engine.all)
    func aVersionDeletedElsewhereLeavesThisMountsCaches(_ engine: Engine) throws {
        let place = try SharedCatalog(engine)
        let store = MemoryObjectStore()
        let disk = try DiskCache(directory: place.dir + "/cache", capacity: 64 << 20, blockSize: 64 << 10)
        let mount = try FSEnv(cache: BlockCache(budget: 16 << 20, blockSize: 64 << 10, disk: disk), catalog: try place.open(), store: store)
        let cli = try FSEnv(catalog: try place.open(), store: store)
        try cli.mkdir("m")
        try cli.put("models/m/keep.pt", pattern(100, seed: 1))
        let data = pattern(300_000, seed: 2)
        try cli.put("models/m/v1.pt", data)
        let before = try mount.registry.lastCachePurge()
        expectSame(try mount.readAll(try mount.inode("models/m/v1.pt")), data)
        mount.cache.drainDisk()
        let object = ObjectIdentity.id(sha256: sha256Hex(data), size: Int64(data.count))
        #expect(disk.has(object: object, range: 0..<Int64(data.count)), "read once: on disk")

        try cli.registry.deleteVersion("m", "v1")
        let (_, purge) = try mount.registry.cachePurges(after: before)
        #expect(purge.objects == [object])
        mount.fs.purge(purge)
        #expect(!disk.has(object: object, range: 0..<1), "gone from the disk cache")
        #expect(!FileManager.default.fileExists(atPath: disk.wholeFilePath(object)))
        #expect(mount.cache.counters.bytesCached == 0, "and from memory")
    }
}
