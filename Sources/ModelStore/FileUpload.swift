import Foundation

/// What a ``FileUpload`` writes: a model's version or a dataset.
public enum UploadItem: Sendable, Equatable {
    case version(Model, Version)
    case dataset(Dataset)

    public var objectKey: String {
        switch self {
        case .version(_, let v): return v.objectKey
        case .dataset(let d): return d.objectKey
        }
    }

    /// `model/v1.zip` or `datasets/qa.jsonl`, for messages.
    public var displayName: String {
        switch self {
        case .version(let m, let v): return m.name + "/" + v.fileName
        case .dataset(let d): return "datasets/" + d.fileName
        }
    }
}

/// Where a file being written is. Each upload goes `streaming` → (`spooled` →) `completing` →
/// `ready`, or to `failed` from any of the first three; `ready` and `failed` are the end.
public enum UploadPhase: String, Sendable {
    /// Bytes stream out to object storage as they come: parts cut and sent, a hole sent as zeros,
    /// a patch written into the part not yet sent.
    case streaming
    /// The writer sought back into bytes already sent (or resized the file): the file is written
    /// in a spool file and uploaded whole at the last close.
    case spooled
    /// The last close sends what is left and completes the object.
    case completing
    /// The object is complete and the row `ready` with its size and sha256.
    case ready
    /// The upload failed with a reason: no object and no multipart upload of it stay.
    case failed
}

/// A file being written as other threads see it (`stat`, `getfattr`, a second close).
public struct UploadState: Sendable {
    public var phase: UploadPhase
    public var item: UploadItem
    /// Bytes written so far (the file's size): once ready, the object's.
    public var size: Int64
    /// Why it failed, once it did.
    public var failure: StoreError?

    public init(phase: UploadPhase, item: UploadItem, size: Int64, failure: StoreError? = nil) {
        self.phase = phase; self.item = item; self.size = size; self.failure = failure
    }

    public var isEnded: Bool { phase == .ready || phase == .failed }

    /// The row's status as this upload knows it.
    public var status: UploadStatus {
        switch phase {
        case .streaming, .spooled, .completing: return .uploading
        case .ready: return .ready
        case .failed: return .failed
        }
    }
}

/// A file being written through the port (``StorePort/beginVersion(in:fileName:owner:by:)`` and
/// the like): bytes in at any offset, `finish` at the last close. Its state is one value
/// (``current``) that any thread may read while the writer writes (`stat` of the file).
public protocol FileUpload: AnyObject, Sendable {
    /// The upload's state now, as one value.
    var current: UploadState { get }
    /// Writes at any offset: in order it streams; a seek back patches the part not yet sent or
    /// moves the file to the spool. A failure fails the upload.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(StoreError)
    /// `ftruncate` while writing.
    func resize(to size: Int64) throws(StoreError)
    /// Completes the upload: the item becomes `ready` (or `failed`, with the error thrown).
    @discardableResult func finish() throws(StoreError) -> UploadItem
    /// Gives up on the upload, recording `reason`.
    func abort(reason: String, code: StoreError.Code)
}

extension FileUpload {
    public var item: UploadItem { current.item }
    public var bytesWritten: Int64 { current.size }
    public var isEnded: Bool { current.isEnded }
    public var failure: StoreError? { current.failure }
    /// The version being written (nil for a dataset).
    public var version: Version? {
        if case .version(_, let v) = item { return v }
        return nil
    }
}
