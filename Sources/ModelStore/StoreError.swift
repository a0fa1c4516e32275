/// The one error type of the store. Every refused operation carries a ``Code`` that the FUSE edge
/// maps to an errno in exactly one place, and a message a person can act on.
public struct StoreError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        /// A bad name, an unsupported format, a malformed request. The corresponding C error is `EINVAL`.
        case invalidArgument
        /// The model, version or dataset already exists. `EEXIST`.
        case alreadyExists
        /// The model, version, dataset or object does not exist. `ENOENT`.
        case notFound
        /// The operation is not allowed, such as deleting the last ready version. `EPERM`.
        case notPermitted
        /// The thing is in use, such as a version a running job reads. `EBUSY`.
        case busy
        /// The version is still uploading; try again later. `EAGAIN`.
        case notReady
        /// A rename across models. `EXDEV`.
        case crossDevice
        /// Versions never change once written. `EROFS`.
        case readOnly
        /// Object storage failed or stayed unreachable after retries. `EIO`.
        case io
        /// The local disk is full. `ENOSPC`.
        case noSpace
        /// The operation is not supported here, such as setting an unknown extended attribute. `ENOTSUP`.
        case notSupported
        /// The file has no such extended attribute. `ENODATA`.
        case noAttribute
        /// The one who asks may not do this, such as another user submitting a job. `EACCES`.
        case accessDenied
        /// A file operation on a directory, such as `cat` of a model. `EISDIR`.
        case isDirectory
        /// A path through something that is not a directory, such as `models/X/v1.zip/a`. `ENOTDIR`.
        case notDirectory
        /// A file handle that is not open, or not open for this. `EBADF`.
        case badDescriptor
        /// A name longer than names may be. `ENAMETOOLONG`.
        case nameTooLong
        /// A file past what object storage holds (5 TiB). `EFBIG`.
        case fileTooBig
        /// The version was deleted while a reader had it open. `ESTALE`.
        case stale
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func invalid(_ message: String) -> StoreError { StoreError(.invalidArgument, message) }
    public static func exists(_ message: String) -> StoreError { StoreError(.alreadyExists, message) }
    public static func notFound(_ message: String) -> StoreError { StoreError(.notFound, message) }
    public static func io(_ message: String) -> StoreError { StoreError(.io, message) }
}
