import Foundation
import ModelFS
import ModelStore
import Registry

/// Applies to this node's mount what deletes left in its caches (a `Purge`), whoever deleted:
/// `modelfs version rm` in another process, a mount on another node. The deletes record their
/// purges in the catalog, so one follower per mount reads them, on either engine (SQLite sends no
/// change notices): every second, one query by primary key. Where it got to is kept in
/// `<data-dir>/cache-purged`, so purges recorded while no mount ran (kept a day) are applied when
/// the next one starts.
final class CachePurgeFollower: Sendable {
    private let stopping = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    static func cursorPath(_ dataDir: String) -> String { dataDir + "/cache-purged" }

    init(registry: Registry, fs: FileSystem, dataDir: String, interval: Double = 1) {
        let file = Self.cursorPath(dataDir)
        let (stopping, finished) = (stopping, finished)
        Thread.detachNewThread {
            defer { finished.signal() }
            var cursor = Self.start(registry, file)
            repeat {
                guard let (through, purge) = try? registry.cachePurges(after: cursor), through > cursor else { continue }
                fs.purge(purge)
                cursor = through
                try? "\(cursor)\n".write(toFile: file, atomically: true, encoding: .utf8)
            } while stopping.wait(timeout: .now() + interval) == .timedOut
        }
    }

    /// Where the last mount of this data dir stopped, or the catalog's last purge for a data dir
    /// that never followed one (or whose catalog was made anew since: its ids start again).
    private static func start(_ registry: Registry, _ file: String) -> Int64 {
        let last = (try? registry.lastCachePurge()) ?? 0
        let kept = (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard let kept, kept <= last else { return last }
        return kept
    }

    func stop() {
        stopping.signal()
        finished.wait()
    }
}
