/* A malicious virtio-blk driver. Each attack prints what the device answered; the VMM must survive all of them,
   report them, and still serve a well-formed request after the driver resets the device. */
#include "guest.h"
static struct queue q;
static struct { uint32_t type, reserved; uint64_t sector; } header;
static uint8_t data[4096] __attribute__((aligned(16)));
static volatile uint8_t status;

static void attempt(const char *name) {
    status = 0xff;
    queue_offer(&q, 0);
    int64_t len = queue_wait(&q);
    puts_(name); puts_(": len="); putdec((uint64_t)(len < 0 ? 999 : len)); puts_(" status="); puthex(status, 2); putc_('\n');
}

static void good(uint32_t type, uint64_t sector, uint32_t len) {
    header.type = type; header.reserved = 0; header.sector = sector;
    q.desc[0] = (struct desc){ (uintptr_t)&header, 16, DESC_NEXT, 1 };
    q.desc[1] = (struct desc){ (uintptr_t)data, len, DESC_NEXT | DESC_WRITE, 2 };
    q.desc[2] = (struct desc){ (uintptr_t)&status, 1, DESC_WRITE, 0 };
}

static void bring_up(uintptr_t b) {
    if (virtio_begin(b, 0) != 0) { puts_("features refused\n"); reset(); }
    queue_setup(b, &q, 0);
    virtio_ready(b);
}

void main(void) {
    uintptr_t b = virtio_find(2);
    if (!b) { puts_("no virtio-blk device\n"); reset(); }
    bring_up(b);

    good(0, 0, 512); q.desc[1].addr = 0xfff00000000ull;            attempt("data-beyond-ram");
    good(0, 0, 512); q.desc[1].addr = 0xd0000000u;                  attempt("data-in-mmio-hole");
    good(0, 0, 512); q.desc[1].len = 0xffffffffu;                   attempt("huge-length");
    good(0, 1ull << 40, 512);                                      attempt("sector-out-of-range");
    good(0, 0xffffffffffffffffull, 512);                           attempt("sector-overflow");
    good(0, 0, 100);                                               attempt("partial-sector");
    good(1, 0, 512); q.desc[1].flags = DESC_NEXT; q.desc[1].next = 1; attempt("looping-chain");
    good(0, 0, 512); q.desc[1].next = 200;                          attempt("next-beyond-queue");
    good(0, 0, 512); q.desc[2].flags = 0;                          attempt("status-read-only");
    good(0, 0, 512); q.desc[0].len = 4;                            attempt("short-header");
    good(0, 0, 512); q.desc[1].flags = DESC_NEXT | 4;              attempt("indirect");
    good(1, 0, 512); q.desc[1].flags = DESC_NEXT | DESC_WRITE;     attempt("write-with-writable-data");
    good(0, 0, 512); header.type = 77;                             attempt("unknown-type");
    good(0, 0, 512); q.desc[0].addr = 0xffffffff00000000ull;       attempt("header-beyond-ram");

    /* Register abuse: unknown registers, nonexistent queue notify, config far out of range. */
    mmio_write(b + 0x0f0, 1);
    mmio_write(b + QUEUE_NOTIFY, 7);
    puts_("config-far="); puthex(mmio_read(b + 0x800), 8); putc_('\n');

    /* The ring itself: the available index jumps past the queue size; the device must stop (NEEDS_RESET). */
    q.avail.idx += 100;
    barrier();
    mmio_write(b + QUEUE_NOTIFY, 0);
    for (volatile int i = 0; i < 20000000 && !(mmio_read(b + STATUS) & 0x40); i++) {}
    puts_("needs-reset="); putdec((mmio_read(b + STATUS) & 0x40) ? 1 : 0); putc_('\n');

    /* A queue whose rings lie outside RAM: DRIVER_OK must kill the device, not the VMM. */
    mmio_write(b + STATUS, 0);
    virtio_begin(b, 0);
    mmio_write(b + QUEUE_SEL, 0);
    mmio_write(b + QUEUE_NUM, 16);
    mmio_write(b + DESC_LO, 0); mmio_write(b + DESC_HI, 0x100);
    mmio_write(b + QUEUE_READY, 1);
    virtio_ready(b);
    puts_("bad-ring-needs-reset="); putdec((mmio_read(b + STATUS) & 0x40) ? 1 : 0); putc_('\n');

    /* After a reset the device works again. */
    bring_up(b);
    good(0, 0, 512);
    attempt("recovered");
    puts_("malicious done\n");
    reset();
}
