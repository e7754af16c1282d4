/* Freestanding helpers shared by the test guests: port I/O, the 16550 UART, the i8042 reset, MMIO, and a
   polling virtio-mmio driver (split virtqueues, no interrupts). */
#include <stdint.h>
#include <stddef.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t mmio_read(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

static void putc_(char c) { while (!(inb(0x3fd) & 0x20)) {} outb(0x3f8, (uint8_t)c); }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void puthex(uint64_t v, int digits) {
    for (int i = digits - 1; i >= 0; i--) putc_("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}
static void putdec(uint64_t v) { char b[24]; int n = 0; do { b[n++] = (char)('0' + v % 10); v /= 10; } while (v); while (n) putc_(b[--n]); }
static __attribute__((noreturn)) void reset(void) { outb(0x64, 0xfe); for (;;) __asm__ volatile("cli; hlt"); }
static void *memset_(void *d, int c, size_t n) { uint8_t *p = d; while (n--) *p++ = (uint8_t)c; return d; }
static void memcpy_(void *d, const void *s, size_t n) { uint8_t *a = d; const uint8_t *b = s; while (n--) *a++ = *b++; }

/* virtio-mmio registers */
enum { MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, DEV_FEAT = 0x010, DEV_FEAT_SEL = 0x014, DRV_FEAT = 0x020,
       DRV_FEAT_SEL = 0x024, QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
       QUEUE_NOTIFY = 0x050, INT_STATUS = 0x060, INT_ACK = 0x064, STATUS = 0x070, DESC_LO = 0x080, DESC_HI = 0x084,
       AVAIL_LO = 0x090, AVAIL_HI = 0x094, USED_LO = 0x0a0, USED_HI = 0x0a4, CONFIG = 0x100 };
enum { DESC_NEXT = 1, DESC_WRITE = 2 };

struct desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
#define QSIZE 16
struct queue {
    struct desc desc[QSIZE] __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[QSIZE], event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[QSIZE]; uint16_t event; } used __attribute__((aligned(4)));
    uint16_t last_used;
    uintptr_t base;
    uint32_t index;
};

/* Finds the virtio-mmio device of type `id` in the VMM's window (0xd0000000, 4 KiB apart). */
static uintptr_t virtio_find(uint32_t id) {
    for (int i = 0; i < 8; i++) {
        uintptr_t b = 0xd0000000u + 0x1000u * (uintptr_t)i;
        if (mmio_read(b + MAGIC) == 0x74726976 && mmio_read(b + DEVICE_ID) == id) return b;
    }
    return 0;
}

/* Reset, acknowledge, negotiate VERSION_1 plus `low` feature bits. Returns 0 when FEATURES_OK stuck. */
static int virtio_begin(uintptr_t b, uint32_t low) {
    mmio_write(b + STATUS, 0);
    mmio_write(b + STATUS, 1);
    mmio_write(b + STATUS, 1 | 2);
    mmio_write(b + DEV_FEAT_SEL, 0);
    uint32_t offered = mmio_read(b + DEV_FEAT);
    mmio_write(b + DRV_FEAT_SEL, 0);
    mmio_write(b + DRV_FEAT, offered & low);
    mmio_write(b + DRV_FEAT_SEL, 1);
    mmio_write(b + DRV_FEAT, 1); /* VERSION_1 */
    mmio_write(b + STATUS, 1 | 2 | 8);
    return (mmio_read(b + STATUS) & 8) ? 0 : -1;
}

static void queue_setup(uintptr_t b, struct queue *q, uint32_t index) {
    memset_(q, 0, sizeof(*q));
    q->base = b;
    q->index = index;
    mmio_write(b + QUEUE_SEL, index);
    mmio_write(b + QUEUE_NUM, QSIZE);
    mmio_write(b + DESC_LO, (uint32_t)(uintptr_t)q->desc);
    mmio_write(b + DESC_HI, (uint32_t)((uintptr_t)q->desc >> 32));
    mmio_write(b + AVAIL_LO, (uint32_t)(uintptr_t)&q->avail);
    mmio_write(b + AVAIL_HI, (uint32_t)((uintptr_t)&q->avail >> 32));
    mmio_write(b + USED_LO, (uint32_t)(uintptr_t)&q->used);
    mmio_write(b + USED_HI, (uint32_t)((uintptr_t)&q->used >> 32));
    mmio_write(b + QUEUE_READY, 1);
}

static void virtio_ready(uintptr_t b) { mmio_write(b + STATUS, 1 | 2 | 8 | 4); }

/* Offers descriptor chain `head` and notifies. */
static void queue_offer(struct queue *q, uint16_t head) {
    q->avail.ring[q->avail.idx % QSIZE] = head;
    barrier();
    q->avail.idx++;
    barrier();
    mmio_write(q->base + QUEUE_NOTIFY, q->index);
}

/* Waits for the next used element; returns its length (and its head in *id), or -1 after a timeout. */
static int64_t queue_wait_id(struct queue *q, uint32_t *id) {
    for (uint64_t spin = 0; spin < 2000000000ull; spin++) {
        barrier();
        if (*(volatile uint16_t *)&q->used.idx != q->last_used) {
            uint32_t len = q->used.ring[q->last_used % QSIZE].len;
            *id = q->used.ring[q->last_used % QSIZE].id;
            q->last_used++;
            return len;
        }
        __asm__ volatile("pause");
    }
    return -1;
}

/* Waits for the next used element; returns its length, or -1 after a (generous) timeout. */
static int64_t queue_wait(struct queue *q) {
    for (uint64_t spin = 0; spin < 2000000000ull; spin++) {
        barrier();
        if (*(volatile uint16_t *)&q->used.idx != q->last_used) {
            uint32_t len = q->used.ring[q->last_used % QSIZE].len;
            q->last_used++;
            return len;
        }
        __asm__ volatile("pause");
    }
    return -1;
}

/* virtio-console multiport, shared by the console guests: control message events and the port handshake. */
enum { CONSOLE_DEVICE_READY = 0, CONSOLE_DEVICE_ADD = 1, CONSOLE_PORT_READY = 3, CONSOLE_PORT_OPEN = 6, CONSOLE_PORT_NAME = 7 };
struct console_control { uint32_t id; uint16_t event, value; };

/* Offers the eight 64-byte control receive buffers `cbuf` on `crx`. */
static void console_offer_control_buffers(struct queue *crx, uint8_t (*cbuf)[64]) {
    for (uint16_t i = 0; i < 8; i++) {
        crx->desc[i] = (struct desc){ (uintptr_t)cbuf[i], 64, DESC_WRITE, 0 };
        queue_offer(crx, i);
    }
}

/* After the driver's DEVICE_READY: answers DEVICE_ADD with PORT_READY and the host's PORT_OPEN with PORT_OPEN
   until `ports` ports are open (`send` writes one control message); `on_name` (optional) sees each PORT_NAME. */
static void console_open_ports(struct queue *crx, uint8_t (*cbuf)[64], int ports,
                               void (*send)(uint32_t, uint16_t, uint16_t),
                               void (*on_name)(uint32_t id, const uint8_t *name, int64_t length)) {
    int opened = 0;
    while (opened < ports) {
        uint32_t id;
        int64_t len = queue_wait_id(crx, &id);
        if (len < 0 || id >= 8) { puts_("control receive timeout\n"); reset(); }
        struct console_control *c = (struct console_control *)cbuf[id];
        if (c->event == CONSOLE_DEVICE_ADD) send(c->id, CONSOLE_PORT_READY, 1);
        else if (c->event == CONSOLE_PORT_NAME && on_name) on_name(c->id, cbuf[id] + 8, len - 8);
        else if (c->event == CONSOLE_PORT_OPEN && c->value == 1) { send(c->id, CONSOLE_PORT_OPEN, 1); opened++; }
        queue_offer(crx, (uint16_t)id);
    }
}
