import Foundation
import Glibc

/// A progress bar on a terminal (percent, MB/s, ETA), plain lines every few seconds otherwise.
final class Progress {
    private let total: Int64
    private let label: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private let isTTY = isatty(STDERR_FILENO) == 1
    private let quiet: Bool

    init(label: String, total: Int64, quiet: Bool = false) {
        self.label = label
        self.total = total
        self.quiet = quiet
    }

    func update(_ done: Int64, force: Bool = false) {
        guard !quiet else { return }
        let now = Date()
        let interval = isTTY ? 0.2 : 5
        guard force || now.timeIntervalSince(lastDraw) >= interval else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(start), 0.001)
        let rate = Double(done) / elapsed
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let eta = rate > 0 && total > done ? Double(total - done) / rate : 0
        let stats = String(format: "%3.0f%% %9@ %8.1f MB/s ETA %@", fraction * 100, Progress.bytes(done) as NSString,
                           rate / 1e6, Progress.clock(eta) as NSString)
        if isTTY {
            let width = 24
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(stats)\u{1B}[K".utf8))
        } else {
            FileHandle.standardError.write(Data("\(label): \(stats)\n".utf8))
        }
    }

    func finish(_ done: Int64) {
        guard !quiet else { return }
        update(done, force: true)
        if isTTY { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit] as NSString)
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
    }
}
