import ArgumentParser
import Dispatch
import Foundation
import Glibc
import ModelStore
import Registry

struct DownloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download a ready version with parallel ranged GETs, checking its sha256.")

    @Argument(help: "The model.") var model: String
    @Argument(help: "The version name (v1) or file name (v1.zip).") var version: String

    @Option(name: .shortAndLong, help: "Where to write it; default ./<version>.<ext>.")
    var output: String?

    @Option(help: "Bytes per ranged GET.")
    var chunkSize: Int = 8 << 20

    @Option(help: "Ranged GETs in flight.")
    var parallel: Int = 4

    @Flag(help: "No progress output.") var quiet = false

    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let name = (try? Formats.splitVersion(version).name) ?? version
            let (_, v) = try registry.version(model, name)
            guard v.status == .ready else {
                throw StoreError(.notReady, "\(model)/\(v.fileName) is \(v.status.rawValue)\(v.error.map { ": " + $0 } ?? "")")
            }
            let target = output ?? v.fileName
            let temp = target + ".modelfs-part"
            let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CLIError("cannot create \(temp): \(String(cString: strerror(errno)))") }
            var ok = false
            defer {
                close(fd)
                if !ok { unlink(temp) }
            }
            let progress = Progress(label: "\(model)/\(v.fileName)", total: v.size, quiet: quiet)
            let digest = try fetch(registry.objects, key: v.objectKey, size: v.size, into: fd, progress: progress)
            guard digest == v.sha256 else {
                throw CLIError("\(model)/\(v.fileName): downloaded bytes have sha256 \(digest), the catalog says \(v.sha256 ?? "none")")
            }
            guard fsync(fd) == 0, rename(temp, target) == 0 else {
                throw CLIError("cannot write \(target): \(String(cString: strerror(errno)))")
            }
            ok = true
            progress.finish(v.size)
            print("\(target): \(v.size) bytes, sha256 \(digest)")
        }
    }

    /// Ranged GETs in parallel, written and hashed in order; memory holds at most `parallel` chunks.
    private func fetch(_ objects: any ObjectStore, key: String, size: Int64, into fd: Int32, progress: Progress) throws -> String {
        let chunk = Int64(max(chunkSize, 1 << 16))
        let count = Int((size + chunk - 1) / chunk)
        let window = max(1, parallel)
        let condition = NSCondition()
        nonisolated(unsafe) var results: [Int: Result<[UInt8], ObjectStoreError>] = [:]
        let queue = DispatchQueue(label: "modelfs.download", attributes: .concurrent)

        func submit(_ index: Int) {
            let range = Int64(index) * chunk..<min(Int64(index + 1) * chunk, size)
            queue.async {
                let result = Result { () throws(ObjectStoreError) in try objects.get(key, range: range) }
                condition.lock()
                results[index] = result
                condition.broadcast()
                condition.unlock()
            }
        }

        let hasher = SHA256Hasher()
        for i in 0..<min(window, count) { submit(i) }
        var done: Int64 = 0
        for i in 0..<count {
            condition.lock()
            while results[i] == nil { condition.wait() }
            let result = results.removeValue(forKey: i)!
            condition.unlock()
            if i + window < count { submit(i + window) }
            let bytes: [UInt8]
            do { bytes = try result.get() } catch { throw error.storeError }
            let expected = Int(min(chunk, size - Int64(i) * chunk))
            guard bytes.count == expected else {
                throw StoreError(.io, "short read of \(key) at \(Int64(i) * chunk): \(bytes.count) of \(expected) bytes")
            }
            hasher.update(bytes)
            let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(Int64(i) * chunk)) }
            guard written == bytes.count else { throw CLIError("write failed: \(String(cString: strerror(errno)))") }
            done += Int64(bytes.count)
            progress.update(done)
        }
        return Digest.hex(hasher.finalize())
    }
}
