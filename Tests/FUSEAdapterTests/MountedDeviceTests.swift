import Glibc
import Testing
@testable import FUSEAdapter

/// The mount's device is read from /proc/self/mountinfo, so setting its read-ahead sends the new
/// mount no request: it must name the same device a stat of the mount point gives.
@Test func theMountedDeviceIsWhatStatSays() throws {
    var st = stat()
    #expect(stat("/proc", &st) == 0)
    let major = (st.st_dev >> 8) & 0xFFF | ((st.st_dev >> 32) & ~0xFFF)
    let minor = (st.st_dev & 0xFF) | ((st.st_dev >> 12) & ~0xFF)
    #expect(FUSEAdapter.mountedDevice("/proc") == "\(major):\(minor)")
    #expect(FUSEAdapter.mountedDevice("/proc/") == "\(major):\(minor)")
    #expect(FUSEAdapter.mountedDevice("/no/such/mount") == nil)
}
