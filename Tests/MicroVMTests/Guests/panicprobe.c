/* Plays a guest kernel that works for HypervisorProbe.kernelBootProblem: prints the line Linux prints when it has
   no root to mount, then resets as `panic=-1 reboot=k` makes Linux do. (On this host kvm_pvm cannot boot the real
   kernel; on hardware-virtualized hosts the probe boots the real one.) */
#include "guest.h"
void main(void) {
    puts_("Linux version 0.0.0-probe-double\n");
    puts_("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n");
    reset();
}
