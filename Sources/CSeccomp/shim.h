// libseccomp, found through pkg-config (libseccomp-dev); linked statically into the release binary.
#include <seccomp.h>
