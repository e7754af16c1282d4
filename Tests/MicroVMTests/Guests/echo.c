/* Serial input: enables the UART's receive interrupt (the VMM then raises IRQ 4 for each byte; interrupts stay
   masked here), polls for a line from the host and echoes it back, then resets. */
#include "guest.h"
void main(void) {
    outb(0x3f9, 0x01); /* IER: received data available */
    puts_("ready\n");
    char line[64];
    int n = 0;
    while (n < 63) {
        while (!(inb(0x3fd) & 0x01)) __asm__ volatile("pause");
        char c = (char)inb(0x3f8);
        if (c == '\n') break;
        line[n++] = c;
    }
    line[n] = 0;
    puts_("got: "); puts_(line); putc_('\n');
    reset();
}
