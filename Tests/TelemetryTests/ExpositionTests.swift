import Foundation
import Glibc
import Testing
import TestSupport
import Catalog
@testable import FUSEAdapter
import Jobs
import ModelFS
import ModelStore
import ReadPath
import Registry
import Telemetry

/// The value of one series (`name{labels}`) in an exposition; nil when it is not there.
func sample(_ exposition: String, _ series: String) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

/// A mount's parts without a mount, built after the bootstrap (an instrument made before it
/// records nothing): a file system over a SQLite catalog in a temporary directory, a memory
/// object store, a block cache; and the FUSE adapter over it.
final class MountParts: @unchecked Sendable {
    let dir: String
    let registry: Registry
    let fs: FileSystem
    let adapter: FUSEAdapter
    let ctx = RequestContext(uid: getuid(), gid: getgid(), pid: 4242)

    init() throws {
        Telemetry.bootstrap()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-telemetry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        registry = Registry(catalog: try Catalog(path: dir + "/catalog.sqlite"), objects: MemoryObjectStore(), uploadConcurrency: 2)
        fs = FileSystem(registry: registry, cache: BlockCache())
        adapter = FUSEAdapter(fs: fs)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func inode(_ path: String) throws -> UInt64 {
        var inode: UInt64 = 1
        for part in path.split(separator: "/") { inode = try fs.lookup(parent: inode, name: Array(part.utf8)).inode }
        return inode
    }

    /// `mkdir models/<model>; cp` of `data` to `models/<model>/<file>`.
    func put(_ model: String, _ file: String, _ data: [UInt8]) throws {
        _ = try fs.mkdir(parent: try inode("models"), name: Array(model.utf8), ctx)
        let (_, opened) = try fs.create(parent: try inode("models/" + model), name: Array(file.utf8), flags: OpenFlags(O_WRONLY | O_CREAT), ctx)
        _ = try data.withUnsafeBytes { try fs.write(opened.handle, offset: 0, bytes: $0, ctx) }
        try fs.flush(opened.handle, ctx)
        try fs.release(opened.handle)
    }

    /// `cat`, in 128 KiB reads.
    func read(_ path: String) throws -> Int {
        let handle = try fs.open(try inode(path), flags: OpenFlags(O_RDONLY)).handle
        defer { try? fs.release(handle) }
        var total = 0
        while true {
            let n = try fs.readReply(handle, offset: Int64(total), size: 128 * KiB).bytes.count
            total += n
            if n < 128 * KiB { return total }
        }
    }
}

/// Each family is in the exposition once the operations that record it ran, moved by them.
/// Other tests may run at the same time in this process and record too: counts are checked as
/// at least what these operations add.
@Suite struct ExpositionTests {
    @Test func readsCountBytesBySourceAndCacheLookups() throws {
        let parts = try MountParts()
        let data = pattern(3 * MiB + 5)
        try parts.put("m", "v1.pt", data)
        let before = Telemetry.exposition()
        #expect(try parts.read("models/m/v1.pt") == data.count)  // fetched from the object store
        let between = Telemetry.exposition()
        #expect(try parts.read("models/m/v1.pt") == data.count)  // from memory
        let after = Telemetry.exposition()

        func moved(_ series: String, _ from: String, _ to: String) -> Double {
            (sample(to, series) ?? 0) - (sample(from, series) ?? 0)
        }
        #expect(moved(#"modelfs_read_bytes_total{source="object_store"}"#, before, between) >= Double(data.count))
        #expect(moved(#"modelfs_cache_lookups_total{cache="memory",result="miss"}"#, before, between) >= 1)
        #expect(moved(#"modelfs_read_bytes_total{source="memory"}"#, between, after) >= Double(data.count))
        #expect(moved(#"modelfs_cache_lookups_total{cache="memory",result="hit"}"#, between, after) >= Double(data.count / (64 * KiB)))
    }

    @Test func uploadsAndCatalogTransactionsAreCounted() throws {
        let parts = try MountParts()
        let before = Telemetry.exposition()
        try parts.put("u", "v1.pt", pattern(100 * KiB))
        let after = Telemetry.exposition()
        let ready = #"modelfs_uploads_total{kind="version",outcome="ready"}"#
        #expect((sample(after, ready) ?? 0) - (sample(before, ready) ?? 0) >= 1)
        #expect(sample(after, "modelfs_uploads_in_flight") != nil)
        let transactions = "modelfs_catalog_transaction_seconds_count"
        #expect((sample(after, transactions) ?? 0) - (sample(before, transactions) ?? 0) >= 2)  // mkdir, create, ready
        #expect(after.contains(#"modelfs_catalog_transaction_seconds_bucket{le="0.001"}"#))
    }

    @Test func aFailedUploadIsCountedFailed() throws {
        let parts = try MountParts()
        try parts.put("f", "v1.pt", pattern(KiB))
        let (_, opened) = try parts.fs.create(parent: try parts.inode("models/f"), name: Array("v2.pt".utf8),
                                              flags: OpenFlags(O_WRONLY | O_CREAT), parts.ctx)
        let before = Telemetry.exposition()
        parts.fs.abortOpenUploads(reason: "unmounted")
        try? parts.fs.release(opened.handle)
        let after = Telemetry.exposition()
        let failed = #"modelfs_uploads_total{kind="version",outcome="failed"}"#
        #expect((sample(after, failed) ?? 0) - (sample(before, failed) ?? 0) >= 1)
    }

    /// `rm` of a model's last version is refused with EPERM: counted under its operation and errno.
    @Test func aRefusalIsCountedByOperationAndErrno() throws {
        let parts = try MountParts()
        try parts.put("r", "v1.pt", pattern(KiB))
        let series = #"modelfs_fuse_errors_total{op="unlink",errno="EPERM"}"#
        let before = sample(Telemetry.exposition(), series) ?? 0
        let error = #expect(throws: StoreError.self) {
            try parts.fs.unlink(parent: try parts.inode("models/r"), name: Array("v1.pt".utf8), parts.ctx)
        }
        let (_, code) = parts.adapter.refusal(try #require(error), "unlink")
        #expect(code == EPERM)
        #expect((sample(Telemetry.exposition(), series) ?? 0) - before >= 1)
    }

    @Test func requestsAreCountedAndTimedByOperation() throws {
        let parts = try MountParts()
        let series = #"modelfs_fuse_requests_total{op="getattr"}"#
        let before = Telemetry.exposition()
        parts.adapter.metrics.served(.getattr, since: RequestMetrics.now() - 300_000)  // 0.3 ms ago
        let after = Telemetry.exposition()
        #expect((sample(after, series) ?? 0) - (sample(before, series) ?? 0) >= 1)
        let slow = #"modelfs_fuse_request_seconds_bucket{op="getattr",le="0.00025"}"#
        let bound = #"modelfs_fuse_request_seconds_bucket{op="getattr",le="0.0005"}"#
        #expect((sample(after, bound) ?? 0) - (sample(before, bound) ?? 0) >= 1)
        #expect(sample(after, slow) != nil)
    }

    @Test func runnersRecordJobsAndServicesByState() throws {
        let parts = try MountParts()
        let jobs = JobService(registry: parts.registry, executor: LocalExecutor(),
                              configuration: JobService.Configuration(directory: parts.dir + "/jobs", trainCommand: nil))
        try jobs.tick()
        let services = ServiceRunner(registry: parts.registry, executor: LocalExecutor(),
                                     configuration: ServiceRunner.Configuration(directory: parts.dir + "/services", command: nil))
        try services.tick()
        let text = Telemetry.exposition()
        #expect(sample(text, #"modelfs_jobs{state="queued"}"#) != nil)
        #expect(sample(text, #"modelfs_jobs{state="running"}"#) != nil)
        for state in ServiceStatus.allCases {
            #expect(sample(text, #"modelfs_services{state="\#(state.rawValue)"}"#) != nil, "\(state)")
        }
    }
}
