// libcap, found through pkg-config (libcap-dev); linked statically into the release binary.
#include <sys/capability.h>
