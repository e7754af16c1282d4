// Nettle's SHA-256 (already linked into bulkhead through libarchive): the image store hashes every blob with it.
#include <nettle/sha2.h>
