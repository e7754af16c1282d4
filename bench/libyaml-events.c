/* The floor for any libyaml-based loader: libyaml's event parser alone over a file, no tree built.
   Prints the median of 30 runs in thread CPU time. Used by bench/policy.sh. */
#include <yaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: libyaml-events FILE\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    static unsigned char buf[16 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    double runs[30];
    long events = 0;
    int count = 30;
#ifdef RUNS_FROM_ARGV
    count = argc > 2 ? atoi(argv[2]) : 1;   /* for instruction counting: parse COUNT times, print nothing */
    if (count > 30) count = 30;
#endif
    for (int r = 0; r < count; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        yaml_parser_t p;
        yaml_event_t e;
        yaml_parser_initialize(&p);
        yaml_parser_set_input_string(&p, buf, n);
        events = 0;
        for (;;) {
            if (!yaml_parser_parse(&p, &e)) { fprintf(stderr, "parse error\n"); return 1; }
            int t = e.type;
            yaml_event_delete(&e);
            events++;
            if (t == YAML_STREAM_END_EVENT) break;
        }
        yaml_parser_delete(&p);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        runs[r] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    }
#ifdef RUNS_FROM_ARGV
    return 0;
#endif
    qsort(runs, 30, sizeof runs[0], cmp);
    printf("libyaml events only (%ld events): median %.3f ms CPU (fastest %.3f ms CPU)\n", events, runs[15], runs[0]);
    return 0;
}
