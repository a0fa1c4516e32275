import Foundation
import Logging
import ModelStore
import Catalog
import UploadPath

/// One version being written: bytes stream out through a ``StreamingUpload``; `finish` makes
/// the version `ready` with its size and sha256, any failure makes it `failed` with the reason
/// and leaves no half object and no open multipart upload behind.
public final class VersionUpload: @unchecked Sendable {
    public let model: Model
    public private(set) var version: Version
    private let registry: Registry
    private let upload: StreamingUpload
    private var ended = false
    private var failure: StoreError?

    init(registry: Registry, model: Model, version: Version, resume: (ResumePoint, Int64)?, source: (path: String, size: Int64)?) {
        self.registry = registry
        self.model = model
        self.version = version
        let catalog = registry.catalog
        let versionID = version.id
        let key = version.objectKey
        let recordID = LockedBox<Int64?>(resume?.1)
        let hooks = UploadHooks(
            created: { (uploadID, sizing) throws(StoreError) in
                let record = try catalog.recordUpload(objectKey: key, uploadID: uploadID, partSize: Int64(sizing.base),
                                                      versionID: versionID, datasetID: nil, sourcePath: source?.path, sourceSize: source?.size)
                recordID.value = record.id
            },
            partDone: { part in
                guard let id = recordID.value else { return }
                try? catalog.recordPart(upload: id, part)
            })
        upload = StreamingUpload(store: registry.objects, key: key, concurrency: registry.uploadConcurrency, hooks: hooks,
                                 resume: resume?.0, logger: registry.logger)
    }

    public var bytesWritten: Int64 { upload.bytesWritten }

    /// Appends bytes; on failure the version is already `failed` when this throws.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        do { try upload.write(bytes) } catch {
            fail(error)
            throw error
        }
    }

    /// Completes the upload: the version becomes `ready`.
    @discardableResult
    public func finish() throws(StoreError) -> Version {
        if ended { throw failure ?? StoreError(.io, "\(version.fileName) is already complete") }
        let result: UploadResult
        do { result = try upload.finish() } catch {
            fail(error)
            throw error
        }
        ended = true
        do {
            try registry.catalog.markVersionReady(id: version.id, size: result.size, sha256: result.sha256)
        } catch {
            // The bytes are complete but the catalog could not say so: remove them rather than
            // leave an object no row vouches for.
            try? registry.objects.delete(version.objectKey)
            throw error
        }
        version.status = .ready
        version.error = nil
        version.size = result.size
        version.sha256 = result.sha256
        registry.publishManifest(model.id)
        return version
    }

    /// Gives up on the upload, recording `reason`.
    public func abort(reason: String) {
        fail(StoreError(.io, reason))
    }

    private func fail(_ error: StoreError) {
        guard !ended else { return }
        ended = true
        failure = error
        let aborted = upload.abort()
        version.status = .failed
        version.error = error.message
        do {
            try registry.catalog.markVersionFailed(id: version.id, error: error.message, size: upload.bytesWritten, uploadStillOpen: !aborted)
        } catch {
            registry.logger.error("could not mark \(model.name)/\(version.fileName) failed: \(error)")
        }
        registry.publishManifest(model.id)
    }
}

/// A value shared between the upload's threads.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
