/* Writes a known line to the UART, then halts with interrupts off (the host stops the VM). */
#include "guest.h"
void main(void) {
    puts_("Hello from the Bulkhead test guest\n");
}
