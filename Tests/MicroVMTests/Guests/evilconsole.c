/* A malicious virtio-console (multiport) driver: hostile control messages, transmit buffers the device must not
   read, receive buffers it must not write, looping chains, register abuse. The VMM must survive every one and
   report it; afterwards the ports still carry a message each way. Each step prints its name on the UART. */
#include "guest.h"
enum { DEVICE_READY = CONSOLE_DEVICE_READY, PORT_READY = CONSOLE_PORT_READY, PORT_OPEN = CONSOLE_PORT_OPEN };
static struct queue rx0, tx0, crx, ctx, rx1, tx1;
static uint8_t cbuf[8][64];
static uint8_t rbuf[256];
static struct console_control out;
static char line[64];

static void step(const char *name) { puts_(name); putc_('\n'); }

static void send_control_raw(uint64_t addr, uint32_t len) {
    ctx.desc[0] = (struct desc){ addr, len, 0, 0 };
    queue_offer(&ctx, 0);
    if (queue_wait(&ctx) < 0) { puts_("control send timeout\n"); reset(); }
}

static void send_control(uint32_t id, uint16_t event, uint16_t value) {
    out = (struct console_control){ id, event, value };
    send_control_raw((uintptr_t)&out, sizeof(out));
}

/* Offers descriptor 0 of `q` as given and waits until the device returns it (a dead device never does: then the
   guest says so and moves on). */
static void offer_and_wait(struct queue *q, struct desc d, const char *name) {
    q->desc[0] = d;
    queue_offer(q, 0);
    int64_t len = queue_wait(q);
    puts_(name); puts_(": len="); putdec((uint64_t)(len < 0 ? 999 : len)); putc_('\n');
}

void main(void) {
    uintptr_t b = virtio_find(3);
    if (!b) { puts_("no virtio-console device\n"); reset(); }
    if (virtio_begin(b, 1u << 1) != 0) { puts_("features refused\n"); reset(); }
    queue_setup(b, &rx0, 0); queue_setup(b, &tx0, 1); queue_setup(b, &crx, 2); queue_setup(b, &ctx, 3);
    queue_setup(b, &rx1, 4); queue_setup(b, &tx1, 5);
    virtio_ready(b);
    console_offer_control_buffers(&crx, cbuf);

    /* Hostile control messages before and around the real handshake. */
    send_control_raw(0xfff00000000ull, 8);                step("control-beyond-ram");
    send_control_raw((uintptr_t)&out, 4);                 step("control-short");
    send_control(999, PORT_READY, 1);                     step("port-ready-unknown-port");
    send_control(0, 42, 1);                               step("control-unknown-event");
    send_control(0, DEVICE_READY, 7);                     step("device-ready-failure");
    send_control(77, PORT_OPEN, 1);                       step("port-open-unknown-port");

    /* The real handshake: both ports open. */
    send_control(0, DEVICE_READY, 1);
    console_open_ports(&crx, cbuf, 2, send_control, 0);
    step("ports-open");

    /* Transmit buffers the device must refuse to read. */
    offer_and_wait(&tx1, (struct desc){ (uintptr_t)line, 8, DESC_WRITE, 0 }, "tx-device-writable");
    offer_and_wait(&tx1, (struct desc){ 0xd0000000u, 64, 0, 0 }, "tx-in-mmio-hole");
    offer_and_wait(&tx1, (struct desc){ 0xfff00000000ull, 64, 0, 0 }, "tx-beyond-ram");
    offer_and_wait(&tx1, (struct desc){ (uintptr_t)line, 0xffffffffu, 0, 0 }, "tx-huge-length");
    offer_and_wait(&tx1, (struct desc){ (uintptr_t)line, 8, DESC_NEXT, 0 }, "tx-looping-chain");
    offer_and_wait(&tx1, (struct desc){ (uintptr_t)line, 8, DESC_NEXT, 200 }, "tx-next-beyond-queue");

    /* Register abuse: a queue that does not exist, config far out of range. */
    mmio_write(b + QUEUE_NOTIFY, 50);
    mmio_write(b + QUEUE_SEL, 99); mmio_write(b + QUEUE_NUM, 16); mmio_write(b + QUEUE_READY, 1);
    puts_("config-far="); puthex(mmio_read(b + 0x800), 8); putc_('\n');

    /* The device still works: a line to the host on port 1, a reply from it. */
    const char *hello = "still here\n";
    size_t n = 0; while (hello[n]) { line[n] = hello[n]; n++; }
    offer_and_wait(&tx1, (struct desc){ (uintptr_t)line, (uint32_t)n, 0, 0 }, "tx-good");
    rx1.desc[0] = (struct desc){ (uintptr_t)rbuf, sizeof(rbuf) - 1, DESC_WRITE, 0 };
    queue_offer(&rx1, 0);
    int64_t got = queue_wait(&rx1);
    if (got < 0) { puts_("no reply\n"); reset(); }
    rbuf[got] = 0;
    puts_("received: "); puts_((const char *)rbuf);

    /* A receive buffer in the MMIO hole: the host's next bytes must not be written there. */
    rx1.desc[0] = (struct desc){ 0xd0000000u, 64, DESC_WRITE, 0 };
    queue_offer(&rx1, 0);
    int64_t bad = queue_wait(&rx1);
    puts_("rx-in-mmio-hole: len="); putdec((uint64_t)(bad < 0 ? 999 : bad)); putc_('\n');
    puts_("malicious console done\n");
    reset();
}
