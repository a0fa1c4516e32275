import Glibc
import Testing
import FUSEAdapter
import ModelStore

/// Every store error code maps to the errno docs/SEMANTICS.md names, and no two share one.
@Test(arguments: [
    (StoreError.Code.invalidArgument, EINVAL), (.alreadyExists, EEXIST), (.notFound, ENOENT), (.notPermitted, EPERM),
    (.busy, EBUSY), (.notReady, EAGAIN), (.crossDevice, EXDEV), (.readOnly, EROFS), (.io, EIO), (.noSpace, ENOSPC),
    (.notSupported, ENOTSUP), (.noAttribute, ENODATA), (.accessDenied, EACCES),
    (.isDirectory, EISDIR), (.notDirectory, ENOTDIR), (.badDescriptor, EBADF), (.nameTooLong, ENAMETOOLONG), (.fileTooBig, EFBIG),
    (.stale, ESTALE),
])
func errnoOf(_ code: StoreError.Code, _ expected: Int32) {
    #expect(errnoValue(for: code) == expected)
}

@Test func everyCodeHasItsOwnErrno() {
    let all = StoreError.Code.allCases.map(errnoValue(for:))
    #expect(Set(all).count == StoreError.Code.allCases.count)
}
