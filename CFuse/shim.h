// libfuse3's low-level API for the mount (next issue). 312: with 31 or 35 fuse_session_loop_mt
// is a macro Swift cannot import.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
