/* Asks for a reset through the i8042 (port 0x64, command 0xfe): the VM must end with "reset". */
#include "guest.h"
void main(void) {
    puts_("resetting through the i8042\n");
    reset();
}
