import Metrics
import ModelStore

/// How many jobs and services are in each state (`modelfs_jobs{state}`, `modelfs_services{state}`),
/// as this mount's runners saw them at their last pass: every node's, when the catalog is shared.
enum StateGauges {
    /// Jobs waiting and running (finished jobs are history, not load).
    static func jobs(queued: Int, running: Int) {
        Gauge(label: "modelfs_jobs", dimensions: [("state", JobStatus.queued.rawValue)]).record(queued)
        Gauge(label: "modelfs_jobs", dimensions: [("state", JobStatus.running.rawValue)]).record(running)
    }

    static func services(_ all: [Service]) {
        for state in ServiceStatus.allCases {
            Gauge(label: "modelfs_services", dimensions: [("state", state.rawValue)]).record(all.count { $0.status == state })
        }
    }
}
