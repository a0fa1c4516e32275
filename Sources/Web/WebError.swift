import Glibc
import Hummingbird
import ModelStore

/// An answer that is not a success: its HTTP status, the message the CLI would print for it and,
/// for a store error, the errno the mount would give (`{"error": {"message", "errno"}}`).
public struct WebError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var message: String
    public var errno: String?

    public init(_ status: HTTPResponse.Status, _ message: String, errno: String? = nil) {
        self.status = status; self.message = message; self.errno = errno
    }

    /// A store error as the API answers it: the mount's errno, and the status that errno means.
    public init(_ e: StoreError) {
        self.init(httpStatus(for: e.code), e.message, errno: errnoName(for: e.code))
    }

    /// A request that names no user where one is needed, or a user nobody knows.
    static func unauthorized(_ message: String) -> WebError { WebError(.unauthorized, message) }
}

/// The one place a store error becomes an HTTP status: by the errno the mount answers with.
public func httpStatus(for code: StoreError.Code) -> HTTPResponse.Status { httpStatus(forErrno: errnoValue(for: code)) }

public func httpStatus(forErrno errno: Int32) -> HTTPResponse.Status {
    switch errno {
    case ENOENT: return .notFound
    // EAGAIN: a version still uploading, not yet what was asked for.
    case EEXIST, EBUSY, ENOTEMPTY, EAGAIN: return .conflict
    case EACCES, EPERM: return .forbidden
    case EINVAL: return .badRequest
    case ENOTSUP: return .notImplemented
    default: return .internalServerError
    }
}
