import Metrics
import Prometheus

/// The process's metrics: swift-metrics' counters, timers and gauges, recorded by the modules
/// that do the work (they import only `Metrics`), land in one Prometheus registry, rendered here
/// as Prometheus' text exposition. The metric names and what to alert on: docs/OPERATIONS.md.
public enum Telemetry {
    /// Every metric of the process.
    public static let registry = PrometheusCollectorRegistry()

    /// Latencies of the mount's requests span microseconds (a cached `getattr`) to seconds (a
    /// `close` completing an upload); the library's default buckets start at 5 ms.
    static let requestBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
    ]
    static let catalogBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    private static let bootstrapped: Void = {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "modelfs_fuse_request_seconds": requestBuckets,
            "modelfs_catalog_transaction_seconds": catalogBuckets,
        ]
        MetricsSystem.bootstrap(factory)
    }()

    /// Makes swift-metrics record into ``registry`` (once per process; later calls do nothing).
    /// Call it before building what records: an instrument made before is a no-op for good.
    public static func bootstrap() { _ = bootstrapped }

    /// The Prometheus text exposition (format 0.0.4) of everything recorded so far.
    public static func exposition() -> String { registry.emitToString() }

    /// The exposition's content type, for an HTTP reply.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}
