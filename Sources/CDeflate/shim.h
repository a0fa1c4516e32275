// libdeflate (Debian's libdeflate-dev): its CRC-32 folds with PCLMUL, about 4x zlib 1.2.13's.
#include <libdeflate.h>
