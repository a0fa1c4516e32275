// libfuse3's low-level API, wrapped where Swift cannot reach: macros, bitfields, versioned symbols.
// 312: with 31 or 35 fuse_session_loop_mt is a macro Swift cannot import.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <stddef.h>
#include <malloc.h>

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
/// there), no writeback cache (writes must reach the upload in order, as they happen).
static inline void cfuse_tune(struct fuse_conn_info *conn, unsigned max_write, unsigned max_readahead) {
    conn->max_write = max_write;
    conn->max_readahead = max_readahead;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
    // Replies that name a file (the local store's objects) are spliced, not read and written.
    if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
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
