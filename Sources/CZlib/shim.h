#include <zlib.h>
// inflateInit2 is a macro Swift cannot import.
static inline int modelfs_inflate_init_raw(z_stream *s) { return inflateInit2(s, -MAX_WBITS); }
static inline int modelfs_inflate_init_gzip(z_stream *s) { return inflateInit2(s, 16 + MAX_WBITS); }
