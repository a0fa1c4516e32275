#include <sqlite3.h>
// SQLITE_TRANSIENT is a cast macro Swift cannot import: it tells SQLite to copy bound text.
static inline void (*sqlite_transient(void))(void *) { return (void (*)(void *))-1; }
