// OpenSSL's libcrypto for SHA-256, MD5 and HMAC-SHA256: a 6 s build where swift-crypto takes minutes.
#include <openssl/evp.h>
#include <openssl/hmac.h>
