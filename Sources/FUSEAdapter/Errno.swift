import Glibc
import ModelStore

/// The one place a store error becomes an errno.
public func errnoValue(for code: StoreError.Code) -> Int32 {
    switch code {
    case .invalidArgument: return EINVAL
    case .alreadyExists: return EEXIST
    case .notFound: return ENOENT
    case .notPermitted: return EPERM
    case .busy: return EBUSY
    case .notReady: return EAGAIN
    case .crossDevice: return EXDEV
    case .readOnly: return EROFS
    case .io: return EIO
    case .noSpace: return ENOSPC
    case .notSupported: return ENOTSUP
    case .noAttribute: return ENODATA
    case .accessDenied: return EACCES
    case .isDirectory: return EISDIR
    case .notDirectory: return ENOTDIR
    case .badDescriptor: return EBADF
    case .nameTooLong: return ENAMETOOLONG
    case .fileTooBig: return EFBIG
    case .stale: return ESTALE
    }
}
