/* virtio-console with multiport: brings up the control queues, answers DEVICE_ADD with PORT_READY, opens the
   ports the host announces, sends a line on port 1 ("control") and port 0 ("stdio"), prints what the host sends
   back on port 1, then resets. */
#include "guest.h"
static struct queue rx0, tx0, crx, ctx, rx1, tx1;
static uint8_t cbuf[8][64];
static uint8_t rbuf[256];
static struct console_control out;
static char line[64];

static void send_control(uint32_t id, uint16_t event, uint16_t value) {
    out = (struct console_control){ id, event, value };
    ctx.desc[0] = (struct desc){ (uintptr_t)&out, sizeof(out), 0, 0 };
    queue_offer(&ctx, 0);
    if (queue_wait(&ctx) < 0) { puts_("control send timeout\n"); reset(); }
}

static void send_data(struct queue *q, const char *s) {
    size_t n = 0; while (s[n]) n++;
    memcpy_(line, s, n);
    q->desc[0] = (struct desc){ (uintptr_t)line, (uint32_t)n, 0, 0 };
    queue_offer(q, 0);
    if (queue_wait(q) < 0) { puts_("data send timeout\n"); reset(); }
}

static void print_name(uint32_t id, const uint8_t *name, int64_t length) {
    puts_("port "); putdec(id); puts_(" name ");
    for (int64_t k = 0; k < length; k++) putc_((char)name[k]);
    putc_('\n');
}

void main(void) {
    uintptr_t b = virtio_find(3);
    if (!b) { puts_("no virtio-console device\n"); reset(); }
    if (virtio_begin(b, 1u << 1) != 0) { puts_("features refused\n"); reset(); }
    uint32_t ports = mmio_read(b + CONFIG + 4);
    queue_setup(b, &rx0, 0); queue_setup(b, &tx0, 1); queue_setup(b, &crx, 2); queue_setup(b, &ctx, 3);
    queue_setup(b, &rx1, 4); queue_setup(b, &tx1, 5);
    virtio_ready(b);
    puts_("max ports="); putdec(ports); putc_('\n');
    console_offer_control_buffers(&crx, cbuf);
    rx1.desc[0] = (struct desc){ (uintptr_t)rbuf, sizeof(rbuf) - 1, DESC_WRITE, 0 };
    queue_offer(&rx1, 0);
    send_control(0, CONSOLE_DEVICE_READY, 1);
    console_open_ports(&crx, cbuf, 2, send_control, print_name);
    send_data(&tx1, "hello over the control port\n");
    send_data(&tx0, "stdio says hi\n");
    int64_t got = queue_wait(&rx1);
    if (got < 0) { puts_("no reply\n"); reset(); }
    rbuf[got] = 0;
    puts_("received: "); puts_((const char *)rbuf);
    reset();
}
