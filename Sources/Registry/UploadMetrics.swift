import Metrics
import ModelStore

/// Uploads for `/metrics`: those in flight (`modelfs_uploads_in_flight`) and how each ended
/// (`modelfs_uploads_total{kind,outcome}`, kind `version` or `dataset`, outcome `ready` or
/// `failed`). Instruments are looked up per upload: a few per file written, not per byte.
enum UploadMetrics {
    static func started() { Meter(label: "modelfs_uploads_in_flight").increment() }

    static func ended(_ item: UploadItem, ready: Bool) {
        Meter(label: "modelfs_uploads_in_flight").decrement()
        let kind: String
        switch item {
        case .version: kind = "version"
        case .dataset: kind = "dataset"
        }
        Counter(label: "modelfs_uploads_total", dimensions: [("kind", kind), ("outcome", ready ? "ready" : "failed")]).increment()
    }
}
