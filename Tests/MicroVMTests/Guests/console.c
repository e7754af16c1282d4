/* virtio-console with multiport: brings up the control queues, answers DEVICE_ADD with PORT_READY, opens the
   ports the host announces, sends a line on port 1 ("control") and port 0 ("stdio"), prints what the host sends
   back on port 1, then resets. */
#include "guest.h"
enum { DEVICE_READY = 0, DEVICE_ADD = 1, PORT_READY = 3, CONSOLE_PORT = 4, PORT_OPEN = 6, PORT_NAME = 7 };
struct control { uint32_t id; uint16_t event, value; };
static struct queue rx0, tx0, crx, ctx, rx1, tx1;
static uint8_t cbuf[8][64];
static uint8_t rbuf[256];
static struct control out;
static char line[64];

static void send_control(uint32_t id, uint16_t event, uint16_t value) {
    out = (struct control){ id, event, value };
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

void main(void) {
    uintptr_t b = virtio_find(3);
    if (!b) { puts_("no virtio-console device\n"); reset(); }
    if (virtio_begin(b, 1u << 1) != 0) { puts_("features refused\n"); reset(); }
    uint32_t ports = mmio_read(b + CONFIG + 4);
    queue_setup(b, &rx0, 0); queue_setup(b, &tx0, 1); queue_setup(b, &crx, 2); queue_setup(b, &ctx, 3);
    queue_setup(b, &rx1, 4); queue_setup(b, &tx1, 5);
    virtio_ready(b);
    puts_("max ports="); putdec(ports); putc_('\n');
    for (uint16_t i = 0; i < 8; i++) {
        crx.desc[i] = (struct desc){ (uintptr_t)cbuf[i], 64, DESC_WRITE, 0 };
        queue_offer(&crx, i);
    }
    rx1.desc[0] = (struct desc){ (uintptr_t)rbuf, sizeof(rbuf) - 1, DESC_WRITE, 0 };
    queue_offer(&rx1, 0);
    send_control(0, DEVICE_READY, 1);
    int opened = 0;
    while (opened < 2) {
        uint32_t id;
        int64_t len = queue_wait_id(&crx, &id);
        if (len < 0 || id >= 8) { puts_("control receive timeout\n"); reset(); }
        struct control *c = (struct control *)cbuf[id];
        if (c->event == DEVICE_ADD) send_control(c->id, PORT_READY, 1);
        else if (c->event == PORT_NAME) {
            puts_("port "); putdec(c->id); puts_(" name ");
            for (int64_t k = 8; k < len; k++) putc_((char)cbuf[id][k]);
            putc_('\n');
        } else if (c->event == PORT_OPEN && c->value == 1) {
            send_control(c->id, PORT_OPEN, 1);
            opened++;
        }
        queue_offer(&crx, (uint16_t)id);
    }
    send_data(&tx1, "hello over the control port\n");
    send_data(&tx0, "stdio says hi\n");
    int64_t got = queue_wait(&rx1);
    if (got < 0) { puts_("no reply\n"); reset(); }
    rbuf[got] = 0;
    puts_("received: "); puts_((const char *)rbuf);
    reset();
}
