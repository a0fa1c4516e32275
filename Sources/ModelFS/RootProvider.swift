import Foundation
import ModelStore

/// The root (`models`, `datasets`, `jobs`, `.stats`) and `.stats`.
final class RootProvider: NamespaceProvider {
    unowned let namespace: Namespace
    /// Asks the other providers for the attributes of the root's children.
    let attributes: @Sendable (Node) throws(StoreError) -> Attributes
    let parts: Set<TreePart> = [.root]

    init(namespace: Namespace, attributes: @escaping @Sendable (Node) throws(StoreError) -> Attributes) {
        self.namespace = namespace
        self.attributes = attributes
    }

    static let children: [(String, Node)] = [("models", .modelsDir), ("datasets", .datasetsDir), ("jobs", .jobsDir), ("services", .servicesDir), (".stats", .stats)]

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        guard parent == .root else { throw StoreError(.notDirectory, "\(Names.printable(name)): .stats is a file, not a directory") }
        guard let (_, node) = RootProvider.children.first(where: { $0.0 == name }) else {
            throw .notFound("no such file: \(Names.printable(name))")
        }
        return node
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        if node == .root { return namespace.directory(node, links: 6) }
        return namespace.file(node, size: Int64(try statsContent().count), modified: Date().timeIntervalSince1970)
    }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] {
        guard node == .root else { throw StoreError(.notDirectory, "not a directory") }
        var out: [DirectoryEntry] = []
        for (name, child) in RootProvider.children {
            out.append(DirectoryEntry(name: name, attributes: child.part == .root ? try attributes(of: child) : try attributes(child)))
        }
        return out
    }

    func parent(of node: Node) throws(StoreError) -> Node { .root }

    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        guard node == .stats else { throw StoreError(.isDirectory, "is a directory") }
        if flags.wantsWrite { throw StoreError(.notPermitted, "generated files are read-only") }
        return Opened(file: ContentFile(try statsContent()), directIO: true)
    }

    func mkdir(in parent: Node, name: String, _ ctx: RequestContext) throws(StoreError) -> Node {
        throw StoreError(.notPermitted, "directories can only be created in models/ (one per model)")
    }

    func describe(_ node: Node) -> String { node == .root ? "." : ".stats" }

    func statsContent() throws(StoreError) -> [UInt8] {
        let s = try namespace.store.stats()
        namespace.cache.drainDisk()  // the disk cache's figures include what is on its way there
        let c = namespace.cache.counters
        let lines = [
            "models: \(s.models)",
            "models.text: \(s.modelsByType["text"] ?? 0)",
            "models.image: \(s.modelsByType["image"] ?? 0)",
            "models.general: \(s.modelsByType["general"] ?? 0)",
            "versions: \(s.versions)",
            "versions.ready: \(s.readyVersions)",
            "bytes: \(s.bytes)",
            "datasets: \(s.datasets)",
            "datasets.bytes: \(s.datasetBytes)",
            "s3.bytes_fetched: \(c.bytesFetched)",
            "s3.get_requests: \(c.requests)",
            "cache.bytes: \(c.bytesCached)",
            "cache.block_hits: \(c.blockHits)",
            "cache.block_misses: \(c.blockMisses)",
            "cache.chunk_bytes: \(namespace.cache.chunks.bytesAllocated.now)",
            "cache.chunk_bytes_peak: \(namespace.cache.chunks.bytesAllocated.peak)",
            "disk_cache.bytes: \(c.diskBytesUsed)",
            "disk_cache.bytes_served: \(c.diskBytesServed)",
            "disk_cache.blocks_dropped: \(c.diskBlocksDropped)",
            "archives.bytes_inflated: \(namespace.archives.inflated?.bytesInflated ?? 0)",
            "archives.files_reused: \(namespace.archives.inflated?.filesReused ?? 0)",
            "archives.whole_inflates: \(namespace.archives.inflated?.wholeInflates ?? 0)",
        ] + (namespace.cache.whole.map { w in
            let c = w.counters
            return ["whole.fetches: \(c.started)", "whole.complete: \(c.completed)", "whole.failed: \(c.failed)",
                    "whole.bytes_served: \(c.bytesServed)"]
        } ?? [])
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }
}
