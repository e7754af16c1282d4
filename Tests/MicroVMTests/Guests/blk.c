/* virtio-blk reader: reads every sector of the first disk, prints an FNV-1a 64 checksum, writes a marker
   sector to the second disk (when there is one and it is writable), then resets. */
#include "guest.h"
static struct queue q;
static struct { uint32_t type, reserved; uint64_t sector; } header;
static uint8_t data[4096] __attribute__((aligned(16)));
static volatile uint8_t status;

static int request(uint32_t type, uint64_t sector, uint32_t len) {
    header.type = type; header.reserved = 0; header.sector = sector;
    q.desc[0] = (struct desc){ (uintptr_t)&header, 16, DESC_NEXT, 1 };
    q.desc[1] = (struct desc){ (uintptr_t)data, len, (uint16_t)(DESC_NEXT | (type == 0 ? DESC_WRITE : 0)), 2 };
    q.desc[2] = (struct desc){ (uintptr_t)&status, 1, DESC_WRITE, 0 };
    status = 0xff;
    queue_offer(&q, 0);
    if (queue_wait(&q) < 0) { puts_("timeout\n"); reset(); }
    return status;
}

void main(void) {
    uintptr_t disks[2] = {0, 0};
    int n = 0;
    for (int i = 0; i < 8 && n < 2; i++) {
        uintptr_t b = 0xd0000000u + 0x1000u * (uintptr_t)i;
        if (mmio_read(b + MAGIC) == 0x74726976 && mmio_read(b + DEVICE_ID) == 2) disks[n++] = b;
    }
    if (!n) { puts_("no virtio-blk device\n"); reset(); }
    uintptr_t b = disks[0];
    if (virtio_begin(b, 0) != 0) { puts_("features refused\n"); reset(); }
    queue_setup(b, &q, 0);
    virtio_ready(b);
    uint64_t sectors = (uint64_t)mmio_read(b + CONFIG) | ((uint64_t)mmio_read(b + CONFIG + 4) << 32);
    uint64_t hash = 0xcbf29ce484222325ull;
    for (uint64_t s = 0; s < sectors; s += 8) {
        uint32_t count = (uint32_t)(sectors - s < 8 ? sectors - s : 8);
        if (request(0, s, count * 512) != 0) { puts_("read error\n"); reset(); }
        for (uint32_t i = 0; i < count * 512; i++) { hash ^= data[i]; hash *= 0x100000001b3ull; }
    }
    puts_("sectors="); putdec(sectors); puts_(" fnv1a64="); puthex(hash, 16); putc_('\n');
    /* A write to the same (read-only) disk must fail with IOERR. */
    puts_("write-to-first-disk status="); putdec((uint64_t)request(1, 0, 512)); putc_('\n');
    if (n > 1) {
        b = disks[1];
        if (virtio_begin(b, 0) != 0) { puts_("features refused\n"); reset(); }
        queue_setup(b, &q, 0);
        virtio_ready(b);
        for (int i = 0; i < 512; i++) data[i] = (uint8_t)("bulkhead-was-here"[i % 17]);
        puts_("write status="); putdec((uint64_t)request(1, 1, 512)); putc_('\n');
        puts_("flush status="); putdec((uint64_t)request(4, 0, 0 * 512)); putc_('\n');
    }
    reset();
}
