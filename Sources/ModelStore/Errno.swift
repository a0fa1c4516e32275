import Glibc

/// The one place a store error becomes an errno: its number (the mount's replies) and its name
/// (the HTTP API's errors, which say which errno the mount would have given).
public func errnoValue(for code: StoreError.Code) -> Int32 { errno(for: code).value }

public func errnoName(for code: StoreError.Code) -> String { errno(for: code).name }

private func errno(for code: StoreError.Code) -> (value: Int32, name: String) {
    switch code {
    case .invalidArgument: return (EINVAL, "EINVAL")
    case .alreadyExists: return (EEXIST, "EEXIST")
    case .notFound: return (ENOENT, "ENOENT")
    case .notPermitted: return (EPERM, "EPERM")
    case .busy: return (EBUSY, "EBUSY")
    case .notReady: return (EAGAIN, "EAGAIN")
    case .crossDevice: return (EXDEV, "EXDEV")
    case .readOnly: return (EROFS, "EROFS")
    case .io: return (EIO, "EIO")
    case .noSpace: return (ENOSPC, "ENOSPC")
    case .notSupported: return (ENOTSUP, "ENOTSUP")
    case .noAttribute: return (ENODATA, "ENODATA")
    case .accessDenied: return (EACCES, "EACCES")
    case .isDirectory: return (EISDIR, "EISDIR")
    case .notDirectory: return (ENOTDIR, "ENOTDIR")
    case .badDescriptor: return (EBADF, "EBADF")
    case .nameTooLong: return (ENAMETOOLONG, "ENAMETOOLONG")
    case .fileTooBig: return (EFBIG, "EFBIG")
    case .stale: return (ESTALE, "ESTALE")
    }
}
