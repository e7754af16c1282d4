/* libfyaml's event parser alone over a file, no tree built: the other packaged C YAML parser, as a second floor
   next to libyaml-events.c. Prints the median of 30 runs in thread CPU time. Used by bench/policy.sh when
   libfyaml-dev is installed (optional: nothing in Bulkhead links it). */
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: libfyaml-events FILE [COUNT]\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    static char buf[16 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int count = argc > 2 ? atoi(argv[2]) : 30;   /* a COUNT argument: parse COUNT times, print nothing (callgrind) */
    if (count > 30) count = 30;
    double runs[30];
    long events = 0;
    for (int r = 0; r < count; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        struct fy_parse_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.flags = FYPCF_QUIET;
        struct fy_parser *p = fy_parser_create(&cfg);
        if (!p || fy_parser_set_string(p, buf, n) != 0) { fprintf(stderr, "cannot set up libfyaml\n"); return 1; }
        events = 0;
        struct fy_event *e;
        while ((e = fy_parser_parse(p)) != NULL) { events++; fy_parser_event_free(p, e); }
        if (fy_parser_get_stream_error(p)) { fprintf(stderr, "parse error\n"); return 1; }
        fy_parser_destroy(p);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        runs[r] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    }
    if (argc > 2) return 0;
    qsort(runs, 30, sizeof runs[0], cmp);
    printf("libfyaml events only (%ld events): median %.3f ms CPU (fastest %.3f ms CPU)\n", events, runs[15], runs[0]);
    return 0;
}
