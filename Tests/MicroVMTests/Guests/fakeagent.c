/* A stand-in for bulkhead-agent that runs on this host's /dev/kvm (kvm_pvm cannot boot a stock kernel): it speaks
   the guest protocol (GuestProtocol: frames "BH" version type length payload, big-endian) over the virtio-console
   ports bulkhead.control (port 0) and bulkhead.stdio (port 1), so the kvm driver's whole path — monitor, VMM,
   ports, create/start/exec/signals/ps/stats, exit status — runs for real with only the guest faked.

   What it does with the container's spec (the create document): "fake-exit=N" anywhere in it sets the exit
   code; "fake-sleep" makes the process wait for a signal (it then ends as killed by that signal); "fake-cat"
   echoes the container's stdin to its stdout until stdin closes. exec'd processes print one line and exit 0, or,
   with "fake-sleep" in their spec, wait for a signal too; "fake-flood" makes one write 2 MiB first. After the container's process ends it announces shutdown and resets the VM, as the agent
   powers off. It prints its progress on the UART (console.log). */
#include "guest.h"

enum { T_HELLO = 1, T_CREATE = 2, T_CREATED = 3, T_START = 4, T_EXEC = 5, T_STARTED = 6, T_STDIN = 7, T_CLOSE_STDIN = 8,
       T_OUTPUT = 9, T_SIGNAL = 10,
       T_EXITED = 12, T_SHUTDOWN = 14, T_LIST = 15, T_PROCESS_LIST = 16, T_STATS_REQUEST = 17, T_STATS = 18 };

static struct queue rx[2], tx[2], crx, ctx;
static uint8_t cbuf[8][64];
#define RXBUF (16 << 10)
#define RXN 8
static uint8_t rbuf[2][RXN][RXBUF];
static uint8_t stream[2][256 << 10];
static uint32_t streamLength[2];
static uint8_t out[80 << 10];
static struct console_control cout;
static uint8_t version = 1;
static char containerID[128];
static uint32_t containerIDLength;
static int32_t exitCode;
static int waitForSignal, echoStdin, started, done;
static uint32_t sleepingExec[8]; /* exec'd processes waiting for a signal ("fake-sleep" in their spec), 0: free */

static void send_control(uint32_t id, uint16_t event, uint16_t value) {
    cout = (struct console_control){ id, event, value };
    ctx.desc[0] = (struct desc){ (uintptr_t)&cout, sizeof(cout), 0, 0 };
    queue_offer(&ctx, 0);
    if (queue_wait(&ctx) < 0) { puts_("fake agent: control send timeout\n"); reset(); }
}

/* Frame building into `out`. */
static uint32_t used;
static void begin(uint8_t type) { out[0] = 'B'; out[1] = 'H'; out[2] = type == T_HELLO ? 1 : version; out[3] = type; used = 8; }
static void u8(uint8_t v) { out[used++] = v; }
static void u32(uint32_t v) { out[used++] = v >> 24; out[used++] = v >> 16; out[used++] = v >> 8; out[used++] = v; }
static void u64(uint64_t v) { u32((uint32_t)(v >> 32)); u32((uint32_t)v); }
static void blob(const void *p, uint32_t n) { u32(n); memcpy_(out + used, p, n); used += n; }
static void text(const char *s) { uint32_t n = 0; while (s[n]) n++; blob(s, n); }
static void send(int port) {
    uint32_t n = used - 8;
    out[4] = n >> 24; out[5] = n >> 16; out[6] = n >> 8; out[7] = n;
    tx[port].desc[0] = (struct desc){ (uintptr_t)out, used, 0, 0 };
    queue_offer(&tx[port], 0);
    if (queue_wait(&tx[port]) < 0) { puts_("fake agent: send timeout\n"); reset(); }
}

static void output(uint32_t process, uint8_t stream_, const char *s) { begin(T_OUTPUT); u32(process); u8(stream_); text(s); send(1); }

static void finish(uint32_t process, uint8_t signaled, int32_t value) {
    output(process, 1, ""); output(process, 2, "");
    begin(T_EXITED); u32(process); u8(signaled); u32((uint32_t)value); send(1);
    if (process == 0) done = 1;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static int match(const uint8_t *p, const char *word) {
    for (uint32_t i = 0; word[i]; i++) if (p[i] != (uint8_t)word[i]) return 0;
    return 1;
}

static void scan_spec(const uint8_t *doc, uint32_t n) {
    for (uint32_t i = 0; i + 5 <= n; i++) {
        if (i + 10 <= n && match(doc + i, "fake-exit=")) {
            int32_t v = 0; uint32_t k = i + 10;
            while (k < n && doc[k] >= '0' && doc[k] <= '9') v = v * 10 + (doc[k++] - '0');
            if (k > i + 10) exitCode = v;
        }
        if (i + 10 <= n && match(doc + i, "fake-sleep")) waitForSignal = 1;
        if (i + 8 <= n && match(doc + i, "fake-cat")) echoStdin = 1;
    }
}

static void line_with_number(char *b, const char *prefix, uint64_t v) {
    uint32_t n = 0; while (prefix[n]) { b[n] = prefix[n]; n++; }
    char d[24]; int k = 0; do { d[k++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (k) b[n++] = d[--k];
    b[n++] = '\n'; b[n] = 0;
}

static void handle(uint8_t type, const uint8_t *p, uint32_t n) {
    char line[96];
    switch (type) {
    case T_HELLO:
        if (n >= 2) version = p[1] >= 2 ? 2 : 1;
        puts_("fake agent: host said hello\n");
        break;
    case T_CREATE: {
        if (n < 4) break;
        uint32_t idn = be32(p);
        if (idn > sizeof(containerID) || 4 + idn + 4 > n) break;
        memcpy_(containerID, p + 4, idn); containerIDLength = idn;
        uint32_t docn = be32(p + 4 + idn);
        if (8 + idn + docn <= n) scan_spec(p + 8 + idn, docn);
        begin(T_CREATED); blob(containerID, containerIDLength); send(0);
        puts_("fake agent: created\n");
        break;
    }
    case T_START: {
        started = 1;
        begin(T_STARTED); u32(0); u32(1); send(0);
        uint32_t k = 0; const char *a = "fake agent: container ";
        while (a[k]) { line[k] = a[k]; k++; }
        for (uint32_t i = 0; i < containerIDLength && k < 60; i++) line[k++] = containerID[i];
        const char *b = " started\n"; for (uint32_t i = 0; b[i]; i++) line[k++] = b[i];
        line[k] = 0;
        output(0, 1, line);
        if (!waitForSignal && !echoStdin) finish(0, 0, exitCode);
        break;
    }
    case T_STDIN:
        /* fake-cat: the container's stdin comes back on its stdout, chunk for chunk. */
        if (n < 8 || be32(p) != 0 || !echoStdin || !started) break;
        if (be32(p + 4) + 8 <= n && be32(p + 4) > 0) { begin(T_OUTPUT); u32(0); u8(1); blob(p + 8, be32(p + 4)); send(1); }
        break;
    case T_CLOSE_STDIN:
        if (n >= 4 && be32(p) == 0 && echoStdin && started) finish(0, 0, exitCode);
        break;
    case T_SIGNAL: {
        if (n < 8 || !started) break;
        uint32_t process = be32(p);
        if (process != 0) {
            for (int i = 0; i < 8; i++) if (sleepingExec[i] == process) {
                sleepingExec[i] = 0;
                line_with_number(line, "fake agent: exec got signal ", be32(p + 4));
                output(process, 2, line);
                finish(process, 1, (int32_t)be32(p + 4));
            }
            break;
        }
        line_with_number(line, "fake agent: signal ", be32(p + 4));
        output(0, 2, line);
        finish(0, 1, (int32_t)be32(p + 4));
        break;
    }
    case T_EXEC: {
        if (n < 4) break;
        uint32_t process = be32(p);
        begin(T_STARTED); u32(process); u32(100 + process); send(0);
        line_with_number(line, "fake agent: exec ", process);
        output(process, 1, line);
        int sleeps = 0, flood = 0;
        for (uint32_t i = 4; i + 10 <= n; i++) {
            if (match(p + i, "fake-sleep")) sleeps = 1;
            if (match(p + i, "fake-flood")) flood = 1;
        }
        /* fake-flood: 2 MiB of output ("0123456789abcde\n" over and over) before the exit. */
        for (int chunk = 0; flood && chunk < 32; chunk++) {
            begin(T_OUTPUT); u32(process); u8(1); u32(64 << 10);
            for (uint32_t i = 0; i < (64 << 10); i++) out[used++] = "0123456789abcde\n"[i & 15];
            send(1);
        }
        if (flood) puts_("fake agent: flood sent\n");
        for (int i = 0; sleeps && i < 8; i++) if (sleepingExec[i] == 0) { sleepingExec[i] = process; break; }
        if (!sleeps) finish(process, 0, 0);
        break;
    }
    case T_LIST:
        begin(T_PROCESS_LIST); u32(1); u32(1); u32(0); u32(0); text("S"); u64(64); text("fake-agent"); send(0);
        break;
    case T_STATS_REQUEST:
        begin(T_STATS); u64(123456789); u64(4 << 20); u64(0); u64(1); u64(0); send(0);
        break;
    default:
        break;
    }
}

/* Takes what the host wrote into port `port`'s receive buffers and handles every whole frame. */
static void drain(int port) {
    struct queue *q = &rx[port];
    for (;;) {
        barrier();
        if (*(volatile uint16_t *)&q->used.idx == q->last_used) return;
        uint32_t id = q->used.ring[q->last_used % QSIZE].id, len = q->used.ring[q->last_used % QSIZE].len;
        q->last_used++;
        if (id < RXN && len <= RXBUF && streamLength[port] + len <= sizeof(stream[port])) {
            memcpy_(stream[port] + streamLength[port], rbuf[port][id], len);
            streamLength[port] += len;
        }
        if (id < RXN) queue_offer(q, (uint16_t)id);
        for (;;) {
            uint32_t have = streamLength[port];
            if (have < 8) break;
            uint8_t *s = stream[port];
            if (s[0] != 'B' || s[1] != 'H') { puts_("fake agent: bad frame\n"); reset(); }
            uint32_t n = be32(s + 4);
            if (n > sizeof(stream[port]) - 8) { puts_("fake agent: frame too large\n"); reset(); }
            if (have < 8 + n) break;
            handle(s[3], s + 8, n);
            memcpy_(s, s + 8 + n, have - 8 - n);
            streamLength[port] = have - 8 - n;
        }
    }
}

void main(void) {
    uintptr_t b = virtio_find(3);
    if (!b) { puts_("fake agent: no virtio-console device\n"); reset(); }
    if (virtio_begin(b, 1u << 1) != 0) { puts_("fake agent: features refused\n"); reset(); }
    queue_setup(b, &rx[0], 0); queue_setup(b, &tx[0], 1); queue_setup(b, &crx, 2); queue_setup(b, &ctx, 3);
    queue_setup(b, &rx[1], 4); queue_setup(b, &tx[1], 5);
    virtio_ready(b);
    console_offer_control_buffers(&crx, cbuf);
    for (int port = 0; port < 2; port++) {
        for (uint16_t i = 0; i < RXN; i++) {
            rx[port].desc[i] = (struct desc){ (uintptr_t)rbuf[port][i], RXBUF, DESC_WRITE, 0 };
            queue_offer(&rx[port], i);
        }
    }
    send_control(0, CONSOLE_DEVICE_READY, 1);
    console_open_ports(&crx, cbuf, 2, send_control, 0);
    puts_("fake agent: ports open\n");
    begin(T_HELLO); u8(1); u8(2); text("bulkhead fake agent (test guest)"); send(0);
    while (!done) {
        drain(0);
        /* stdin travels on the stdio port, start on the control port: stdin that overtook start waits. */
        if (started) drain(1);
        __asm__ volatile("pause");
    }
    begin(T_SHUTDOWN); send(0);
    puts_("fake agent: done\n");
    for (volatile uint64_t spin = 0; spin < 20000000ull; spin++) {}
    reset();
}
