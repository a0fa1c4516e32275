import Catalog
import Foundation
import Glibc
import Logging
import ModelStore

/// Keeps this node's lease in a shared catalog: renews it every third of its length, and (in a
/// mount) sweeps uploads left by nodes whose lease ran out, so a node that was killed or powered
/// off has its uploads failed and aborted by the nodes still up.
public final class NodeHeartbeat: @unchecked Sendable {
    private let registry: Registry
    private let node: String
    private let seconds: Double
    private let sweeps: Bool
    private let stopped = NSCondition()
    private var done = false
    private var thread: Thread?

    /// Takes the lease now (so an error here is the caller's), then renews it in the background.
    public init(registry: Registry, node: String, role: String, seconds: Double, sweeps: Bool) throws(StoreError) {
        self.registry = registry
        self.node = node
        self.seconds = seconds
        self.sweeps = sweeps
        try registry.catalog.renewLease(node: node, host: Writer.hostname(), pid: getpid(), role: role, seconds: seconds)
        let thread = Thread { [self] in self.loop(role: role) }
        thread.name = "node-lease"
        self.thread = thread
        thread.start()
    }

    private func loop(role: String) {
        let logger = registry.logger
        while !waitOrStop(seconds / 3) {
            do {
                try registry.catalog.renewLease(node: node, host: Writer.hostname(), pid: getpid(), role: role, seconds: seconds)
            } catch {
                logger.warning("node lease not renewed: \(error.message)")
            }
            // Uploads of this process that failed while the catalog was away.
            registry.recordDeferredFailures()
            if sweeps, let failed = try? registry.failInterruptedUploads(), failed > 0 {
                logger.notice("failed \(failed) upload(s) of nodes whose lease ran out")
            }
        }
    }

    /// Waits `interval` seconds; true when ``stop()`` was called.
    private func waitOrStop(_ interval: Double) -> Bool {
        stopped.lock()
        defer { stopped.unlock() }
        let deadline = Date().addingTimeInterval(interval)
        while !done && stopped.wait(until: deadline) {}
        return done
    }

    public func stop() {
        stopped.lock()
        done = true
        stopped.broadcast()
        stopped.unlock()
    }
}
