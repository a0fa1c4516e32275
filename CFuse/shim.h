// libfuse3's low-level API, wrapped where Swift cannot reach: macros, bitfields, versioned symbols.
// Built against libfuse >= 3.17 (scripts/lib.sh builds 3.18 into .deps/libfuse and points
// pkg-config at it) it offers FUSE passthrough; against Debian 12's 3.14 (a plain `swift build`)
// the same calls compile and passthrough is simply unavailable.
// `fuse_lowlevel.h`, not `fuse3/fuse_lowlevel.h`: the include path pkg-config gives is the one
// of the libfuse that is linked; /usr/include/fuse3 must not be picked up beside another one.
// libfuse_config.h names the version from 3.17 on (before, fuse_common.h does, and that needs
// FUSE_USE_VERSION first): no version here means an older libfuse.
#include <libfuse_config.h>
#if defined(FUSE_MAJOR_VERSION) && (FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 17))
// 317: fuse_file_info.backing_id, FUSE_CAP_PASSTHROUGH, max_backing_stack_depth.
#define FUSE_USE_VERSION 317
#define CFUSE_HAS_PASSTHROUGH 1
#else
// 312: with 31 or 35 fuse_session_loop_mt is a macro Swift cannot import.
#define FUSE_USE_VERSION 312
#define CFUSE_HAS_PASSTHROUGH 0
#endif
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <malloc.h>
#include <sys/ioctl.h>

/// The libfuse the build compiled against, e.g. 318 or 314.
static inline int cfuse_version(void) { return FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION; }

static inline struct fuse_session *cfuse_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *ops,
                                                     void *userdata) {
    return fuse_session_new(args, ops, sizeof(*ops), userdata);
}

/// The multi-threaded loop. max_idle_threads is left at libfuse's default: forwarding UINT_MAX breaks it.
static inline int cfuse_loop_mt(struct fuse_session *se, unsigned max_threads) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (!config) return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(config, 0);
    fuse_loop_cfg_set_max_threads(config, max_threads);
    int rc = fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
    return rc;
}

/// Called from init: big writes and reads, O_TRUNC passed to open (so cp onto a version is refused
/// there), no writeback cache (writes must reach the upload in order, as they happen; passthrough
/// refuses it too). With `passthrough`, asks for FUSE passthrough when the kernel offers it; the
/// answer is whether it was granted (it is offered only to a server with CAP_SYS_ADMIN).
static inline int cfuse_tune(struct fuse_conn_info *conn, unsigned max_write, unsigned max_readahead, int passthrough) {
    conn->max_write = max_write;
    conn->max_readahead = max_readahead;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
    // Replies that name a file (the local store's objects) are spliced, not read and written.
    if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
#if CFUSE_HAS_PASSTHROUGH
    if (passthrough && (conn->capable & FUSE_CAP_PASSTHROUGH)) {
        conn->want |= FUSE_CAP_PASSTHROUGH;
        // Backing files (the local store's objects, the disk cache's copies) on a plain file system:
        // the FUSE layer is the only stacked one, so overlayfs may still be stacked over this mount.
        // One on overlayfs is refused at open (ELOOP), and that open goes through the daemon.
        conn->max_backing_stack_depth = FUSE_BACKING_STACKED_UNDER;
        return 1;
    }
#else
    (void)passthrough;
#endif
    return 0;
}

#if CFUSE_HAS_PASSTHROUGH
// The kernel's ioctls behind fuse_passthrough_open/close (linux/fuse.h, UAPI since 6.9; Debian
// 12's kernel headers predate them). Issued here rather than through libfuse, whose wrappers log
// every refusal at error level to stderr and lose its errno: a mount that cannot pass through
// says so once, with the reason.
struct cfuse_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define CFUSE_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct cfuse_backing_map)
#define CFUSE_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
#endif

/// Registers `fd` with the kernel as a backing file: its id (> 0), or -errno
/// (-ENOTSUP when this libfuse has no passthrough).
static inline int cfuse_backing_open(struct fuse_session *se, int fd) {
#if CFUSE_HAS_PASSTHROUGH
    struct cfuse_backing_map map = { .fd = fd, .flags = 0, .padding = 0 };
    int id = ioctl(fuse_session_fd(se), CFUSE_DEV_IOC_BACKING_OPEN, &map);
    if (id < 0) return -errno;
    if (id == 0) return -EIO;
    return id;
#else
    (void)se; (void)fd;
    return -ENOTSUP;
#endif
}

/// Forgets a backing id; files opened with it keep their backing file until they are released.
static inline int cfuse_backing_close(struct fuse_session *se, int backing_id) {
#if CFUSE_HAS_PASSTHROUGH
    uint32_t id = (uint32_t)backing_id;
    return ioctl(fuse_session_fd(se), CFUSE_DEV_IOC_BACKING_CLOSE, &id) < 0 ? -errno : 0;
#else
    (void)se; (void)backing_id;
    return -ENOTSUP;
#endif
}

/// Replies to a read with `count` bytes of file `fd` at `offset`: spliced from the file's page
/// cache into /dev/fuse when the kernel allows it, else read and written by libfuse.
static inline int cfuse_reply_file(fuse_req_t req, int fd, off_t offset, size_t count) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(count);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = offset;
    return fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static inline void cfuse_fi_set_open(struct fuse_file_info *fi, uint64_t fh, int keep_cache, int direct_io) {
    fi->fh = fh;
    fi->keep_cache = keep_cache ? 1 : 0;
    fi->direct_io = direct_io ? 1 : 0;
}

/// The open reply's backing id (0: reads come to the daemon); libfuse adds FOPEN_PASSTHROUGH.
static inline void cfuse_fi_set_backing(struct fuse_file_info *fi, int backing_id) {
#if CFUSE_HAS_PASSTHROUGH
    fi->backing_id = backing_id;
#else
    (void)fi; (void)backing_id;
#endif
}

static inline int cfuse_req_pid(fuse_req_t req) { return (int)fuse_req_ctx(req)->pid; }
static inline unsigned cfuse_req_uid(fuse_req_t req) { return (unsigned)fuse_req_ctx(req)->uid; }
static inline unsigned cfuse_req_gid(fuse_req_t req) { return (unsigned)fuse_req_ctx(req)->gid; }

/// glibc's allocator, tuned for a long-lived mount: allocations over 1 MiB are always their own
/// mapping, returned to the kernel when freed (by default the threshold climbs to 32 MiB and freed
/// multi-megabyte buffers pile up in per-thread arenas), and at most 4 arenas for 2 to 16 threads.
static inline void cfuse_tune_allocator(void) {
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_ARENA_MAX, 4);
}
