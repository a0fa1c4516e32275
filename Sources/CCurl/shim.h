// curl_easy_setopt and curl_easy_getinfo are variadic: Swift cannot call them,
// so each argument type gets a typed wrapper.
#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

static inline CURLcode curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode curl_setopt_write_function(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f);
}
static inline CURLcode curl_setopt_read_function(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_READFUNCTION, f);
}
static inline CURLcode curl_setopt_header_function(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f);
}
static inline CURLcode curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode curl_setopt_seek_function(CURL *h, int (*f)(void *, curl_off_t, int)) {
    return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, f);
}
static inline CURLcode curl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }

// The socket of a handle's connection, kept in `*slot` (-1 when none): set as curl opens it,
// cleared as curl closes it. curl copies the close callback into the connection, so `slot` must
// outlive the handle's connections (freed after curl_easy_cleanup).
static int modelfs_curl_sockopt(void *slot, curl_socket_t fd, curlsocktype purpose) {
    if (purpose == CURLSOCKTYPE_IPCXN) *(int *)slot = fd;
    return CURL_SOCKOPT_OK;
}
static int modelfs_curl_closesocket(void *slot, curl_socket_t fd) {
    if (*(int *)slot == fd) *(int *)slot = -1;
    return close(fd);
}
static inline void curl_track_socket(CURL *h, int *slot) {
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, modelfs_curl_sockopt);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, (void *)slot);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, modelfs_curl_closesocket);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, (void *)slot);
}
/// SO_RCVLOWAT: poll (and the kernel's wake-up of a waiting receiver) waits for this many bytes.
static inline int modelfs_set_rcvlowat(int fd, int bytes) {
    return setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes);
}
