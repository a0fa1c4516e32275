import Dispatch
import Metrics
import ModelStore

/// What the adapter counts of the requests it serves: each operation's requests and latency
/// (`modelfs_fuse_requests_total{op}`, `modelfs_fuse_request_seconds{op}`), and its refusals by
/// errno (`modelfs_fuse_errors_total{op,errno}`). The instruments of each operation are made
/// once, with the adapter: a request costs an atomic add and a histogram update, no allocation.
final class RequestMetrics: Sendable {
    /// The operations served, as libfuse names them.
    enum Operation: Int, CaseIterable {
        case lookup, getattr, setattr, mkdir, rmdir, unlink, rename, link, mknod, symlink, readlink
        case open, create, read, write, flush, release, fsync, opendir, readdir, readdirplus, releasedir
        case statfs, getxattr, listxattr, setxattr, removexattr, access
    }

    private let requests: [Counter]
    private let seconds: [Timer]
    /// Opens the kernel reads through passthrough: their bytes never reach this process, so
    /// they are in no read counter.
    let passthroughOpens = Counter(label: "modelfs_passthrough_opens_total")

    init() {
        requests = Operation.allCases.map { Counter(label: "modelfs_fuse_requests_total", dimensions: [("op", "\($0)")]) }
        seconds = Operation.allCases.map { Timer(label: "modelfs_fuse_request_seconds", dimensions: [("op", "\($0)")]) }
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func served(_ op: Operation, since start: UInt64) {
        requests[op.rawValue].increment()
        seconds[op.rawValue].recordNanoseconds(Int64(RequestMetrics.now() &- start))
    }

    /// A request refused with `code`'s errno. Made per refusal: refusals are not the hot path.
    func refused(_ op: String, _ code: StoreError.Code) {
        Counter(label: "modelfs_fuse_errors_total", dimensions: [("op", op), ("errno", errnoName(for: code))]).increment()
    }
}
