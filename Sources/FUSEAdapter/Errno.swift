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

/// An errno's symbolic name, as a metric's label (Glibc does not export `strerrorname_np`): the
/// errnos this adapter answers with, else the number.
public func errnoName(_ code: Int32) -> String {
    switch code {
    case EINVAL: return "EINVAL"
    case EEXIST: return "EEXIST"
    case ENOENT: return "ENOENT"
    case EPERM: return "EPERM"
    case EBUSY: return "EBUSY"
    case EAGAIN: return "EAGAIN"
    case EXDEV: return "EXDEV"
    case EROFS: return "EROFS"
    case EIO: return "EIO"
    case ENOSPC: return "ENOSPC"
    case ENOTSUP: return "ENOTSUP"
    case ENODATA: return "ENODATA"
    case EACCES: return "EACCES"
    case EISDIR: return "EISDIR"
    case ENOTDIR: return "ENOTDIR"
    case EBADF: return "EBADF"
    case ENAMETOOLONG: return "ENAMETOOLONG"
    case EFBIG: return "EFBIG"
    case ESTALE: return "ESTALE"
    case ENOTEMPTY: return "ENOTEMPTY"
    case ERANGE: return "ERANGE"
    default: return "\(code)"
    }
}
