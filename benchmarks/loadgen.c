/*
 * kvloop's own small load generator (Linux, epoll, one thread), used by compare_redis.py to
 * drive kvloop and redis-server alike without being the bottleneck itself.
 *
 *   cc -O2 -o loadgen benchmarks/loadgen.c
 *   ./loadgen -p 9999 -c 50 -P 16 -d 5 --prefill                 # kvloop: PUT/GET lines
 *   ./loadgen --redis -p 6379 -c 50 -P 16 -d 5 --prefill         # redis: RESP SET/GET
 *   ./loadgen -p 9999 -c 50 --txn -d 5                  # START, PUT, PUT, COMMIT per unit
 *
 * A unit is one GET or PUT (--get-pct of them GETs), or with --txn one transaction
 * (kvloop START/PUT/PUT/COMMIT, redis MULTI/SET/SET/EXEC). Each connection keeps -P units in
 * flight. The latency of a unit runs from writing it to reading its last reply; latencies go
 * into a log-linear histogram (under 1% error). Keys are key:0 .. key:K-1.
 *
 * It prints one line of key=value fields: ops_per_sec (units/s in the measured window),
 * units, replies (every reply read after the prefill, the drain included), p50_us, p99_us, p999_us,
 * max_us, errors, error_replies, loadgen_cpu_pct, server_cpu_pct and server_sys_pct (with
 * --server-pid: all of the server's CPU time, and the part of it spent in the kernel) and
 * other_cpu_pct (every other process on the machine during the window: a high figure means
 * the numbers are disturbed). It only connects to 127.0.0.1 and always stops by itself
 * (-d and --timeout bound every phase).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 7
#define BUCKETS (64 << SUB_BITS)
#define READ_SIZE 65536

static struct {
    int port, conns, pipeline, keys, value_size, get_pct, txn, redis, prefill, server_pid;
    double seconds, warmup, timeout;
} opt = {9999, 1, 1, 10000, 100, 90, 0, 0, 0, 0, 5.0, 0.0, 60.0};

static uint64_t hist[BUCKETS], hist_count, hist_max;
static long replies_total, error_replies;
static char *value;

struct conn {
    int fd;
    char *in; size_t in_len;          /* bytes read, not yet parsed */
    char *out; size_t out_len, out_off, out_cap;
    uint64_t *sent_at; int *due;      /* ring of units in flight: start ns, replies due */
    int head, inflight;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) { perror(what); exit(2); }

static void record(uint64_t v) {
    int bits = v ? 64 - __builtin_clzll(v) : 0;
    int shift = bits > SUB_BITS + 1 ? bits - SUB_BITS - 1 : 0;
    hist[((uint64_t)shift << SUB_BITS) + (v >> shift)]++;
    hist_count++;
    if (v > hist_max) hist_max = v;
}

static double percentile_us(double pct) {
    uint64_t rank = (uint64_t)((double)hist_count * pct / 100.0 + 0.999999), seen = 0;
    if (!hist_count) return 0;
    if (rank < 1) rank = 1;
    for (int i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) {
            int shift = (i >> SUB_BITS) > 0 ? (i >> SUB_BITS) - 1 : 0;
            uint64_t low = (uint64_t)(i - (shift << SUB_BITS)) << shift;
            uint64_t mid = low + ((1ull << shift) - 1) / 2;
            return (double)(mid < hist_max ? mid : hist_max) / 1000.0;
        }
    }
    return (double)hist_max / 1000.0;
}

static void append(struct conn *c, const char *data, size_t len) {
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        if (!(c->out = realloc(c->out, c->out_cap))) die("realloc");
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

/* One command: kvloop "VERB key [value]\n", or a RESP array for redis. */
static void command(struct conn *c, const char *verb, long key, int with_value) {
    char head[128], keytext[32];
    int klen = snprintf(keytext, sizeof keytext, "key:%ld", key);
    if (!opt.redis) {
        int n = snprintf(head, sizeof head, "%s %s%s", verb, keytext, with_value ? " " : "");
        append(c, head, n);
        if (with_value) append(c, value, opt.value_size);
        append(c, "\n", 1);
        return;
    }
    int n = snprintf(head, sizeof head, "*%d\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n",
                     with_value ? 3 : 2, strlen(verb), verb, klen, keytext);
    append(c, head, n);
    if (with_value) {
        n = snprintf(head, sizeof head, "$%d\r\n", opt.value_size);
        append(c, head, n);
        append(c, value, opt.value_size);
        append(c, "\r\n", 2);
    }
}

static void bare(struct conn *c, const char *kv, const char *redis) {
    if (opt.redis) append(c, redis, strlen(redis)); else append(c, kv, strlen(kv));
}

static int queue_unit(struct conn *c, uint64_t t) {
    int slot = (c->head + c->inflight) % opt.pipeline;
    if (opt.txn) {
        bare(c, "START\n", "*1\r\n$5\r\nMULTI\r\n");
        command(c, opt.redis ? "SET" : "PUT", random() % opt.keys, 1);
        command(c, opt.redis ? "SET" : "PUT", random() % opt.keys, 1);
        bare(c, "COMMIT\n", "*1\r\n$4\r\nEXEC\r\n");
        c->due[slot] = 4;
    } else {
        int get = (random() % 100) < opt.get_pct;
        command(c, get ? "GET" : (opt.redis ? "SET" : "PUT"), random() % opt.keys, !get);
        c->due[slot] = 1;
    }
    c->sent_at[slot] = t;
    c->inflight++;
    return 1;
}

/* Length of one complete RESP reply at p (0 if incomplete); *err set for an error reply. */
static size_t resp_reply(const char *p, size_t len, int *err) {
    const char *eol = memchr(p, '\n', len);
    if (!eol) return 0;
    size_t line = (size_t)(eol - p) + 1;
    if (p[0] == '-') *err = 1;
    if (p[0] == '$') {
        long n = atol(p + 1);
        if (n < 0) return line;
        return line + (size_t)n + 2 <= len ? line + (size_t)n + 2 : 0;
    }
    if (p[0] == '*') {
        long n = atol(p + 1);
        size_t used = line;
        for (long i = 0; i < n; i++) {
            size_t one = resp_reply(p + used, len - used, err);
            if (!one) return 0;
            used += one;
        }
        return used;
    }
    return line;
}

/* Parse every complete reply; returns how many units finished. */
static int parse_replies(struct conn *c, uint64_t t, int measuring) {
    size_t off = 0;
    int finished = 0;
    while (off < c->in_len) {
        int err = 0;
        size_t one;
        if (opt.redis) {
            one = resp_reply(c->in + off, c->in_len - off, &err);
        } else {
            char *eol = memchr(c->in + off, '\n', c->in_len - off);
            one = eol ? (size_t)(eol - (c->in + off)) + 1 : 0;
            err = one && strncmp(c->in + off, "{\"status\":\"Ok\"", 14) != 0 &&
                  !memmem(c->in + off, one, "NOT_FOUND", 9);
        }
        if (!one) break;
        off += one;
        if (!c->inflight) { fprintf(stderr, "loadgen: a reply nobody asked for\n"); exit(2); }
        replies_total++;
        error_replies += err;
        if (--c->due[c->head] == 0) {
            if (measuring) record(t - c->sent_at[c->head]);
            c->head = (c->head + 1) % opt.pipeline;
            c->inflight--;
            finished++;
        }
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return finished;
}

static int flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN) return 1;
            die("send");
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

static struct conn *open_conns(int epfd) {
    struct conn *cs = calloc((size_t)opt.conns, sizeof *cs);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(opt.port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &cs[i];
        int one = 1;
        if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0) die("socket");
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->in = malloc(READ_SIZE * 2);
        c->sent_at = calloc((size_t)opt.pipeline, sizeof *c->sent_at);
        c->due = calloc((size_t)opt.pipeline, sizeof *c->due);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    return cs;
}

/* Read what one connection has; returns units finished, -1 if the server closed it. */
static int read_conn(struct conn *c, uint64_t t, int measuring) {
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, READ_SIZE, MSG_DONTWAIT);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN) break;
            die("recv");
        }
        c->in_len += (size_t)n;
        if (!(c->in = realloc(c->in, c->in_len + READ_SIZE))) die("realloc");
        if ((size_t)n < READ_SIZE) break;
    }
    return parse_replies(c, t, measuring);
}

/* PUT/SET every key once, 1000 at a time, before the run (blocking: nothing else runs). */
static void prefill(struct conn *c) {
    char buf[READ_SIZE];
    for (long first = 0; first < opt.keys; first += 1000) {
        long last = first + 1000 < opt.keys ? first + 1000 : opt.keys, seen = 0;
        for (long k = first; k < last; k++) command(c, opt.redis ? "SET" : "PUT", k, 1);
        if (send(c->fd, c->out, c->out_len, MSG_NOSIGNAL) != (ssize_t)c->out_len)
            die("prefill send");
        c->out_len = 0;
        while (seen < last - first) {  /* each reply here is one line */
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n <= 0) die("prefill recv");
            for (ssize_t i = 0; i < n; i++) seen += buf[i] == '\n';
        }
    }
}

static double cpu_seconds_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The CPU seconds of process pid (user + system), and in *sys its system (kernel) seconds. */
static double cpu_seconds_pid(int pid, double *sys) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                     &utime, &stime) != 2) return -1;
    *sys = (double)stime / (double)sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double busy_seconds_all(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
                     &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got != 8) return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static void usage(void) {
    fputs("usage: loadgen [-p PORT] [-c CONNS] [-P DEPTH] [-d SECONDS] [-k KEYS] [-s BYTES]\n"
          "               [--get-pct N] [--txn] [--redis] [--prefill] [--warmup S]\n"
          "               [--server-pid PID] [--timeout S]   (see the comment at the top)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    static struct option longs[] = {
        {"get-pct", 1, 0, 'g'}, {"txn", 0, 0, 't'}, {"redis", 0, 0, 'r'},
        {"prefill", 0, 0, 'f'}, {"warmup", 1, 0, 'w'}, {"server-pid", 1, 0, 'S'},
        {"timeout", 1, 0, 'T'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "p:c:P:d:k:s:h", longs, NULL)) != -1) {
        switch (ch) {
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'P': opt.pipeline = atoi(optarg); break;
        case 'd': opt.seconds = atof(optarg); break;
        case 'k': opt.keys = atoi(optarg); break;
        case 's': opt.value_size = atoi(optarg); break;
        case 'g': opt.get_pct = atoi(optarg); break;
        case 't': opt.txn = 1; break;
        case 'r': opt.redis = 1; break;
        case 'f': opt.prefill = 1; break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'S': opt.server_pid = atoi(optarg); break;
        case 'T': opt.timeout = atof(optarg); break;
        default: usage();
        }
    }
    if (opt.conns < 1 || opt.pipeline < 1 || opt.keys < 1 || opt.value_size < 1 ||
        opt.seconds <= 0 || opt.get_pct < 0 || opt.get_pct > 100) usage();
    alarm((unsigned)(opt.timeout + opt.seconds + opt.warmup + 1));  /* a hard stop */
    srandom(1);
    value = malloc((size_t)opt.value_size);
    memset(value, 'v', (size_t)opt.value_size);

    int epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    struct conn *cs = open_conns(epfd);
    if (opt.prefill) prefill(&cs[0]);

    struct epoll_event events[256];
    uint64_t start = now_ns();
    uint64_t measure_at = start + (uint64_t)(opt.warmup * 1e9);
    uint64_t end = measure_at + (uint64_t)(opt.seconds * 1e9);
    uint64_t drain_until = end + (uint64_t)(opt.timeout * 1e9);
    int measuring = opt.warmup <= 0, opened = measuring, running = 1;
    long units = 0;
    double cpu0 = cpu_seconds_self(), server0 = -1, all0 = -1, cpu1 = 0, server1 = -1, all1 = -1;
    double sys0 = 0, sys1 = 0;
    uint64_t window_start = start, window_end = end;
    if (measuring) { server0 = cpu_seconds_pid(opt.server_pid, &sys0); all0 = busy_seconds_all(); }
    for (int i = 0; i < opt.conns; i++) {
        while (cs[i].inflight < opt.pipeline) queue_unit(&cs[i], start);
        flush_out(&cs[i]);
    }
    for (;;) {
        uint64_t t = now_ns();
        if (!opened && t >= measure_at) {
            measuring = opened = 1; window_start = t;
            cpu0 = cpu_seconds_self(); server0 = cpu_seconds_pid(opt.server_pid, &sys0);
            all0 = busy_seconds_all();
        }
        if (running && t >= end) {
            running = 0; measuring = 0; window_end = t;
            cpu1 = cpu_seconds_self(); server1 = cpu_seconds_pid(opt.server_pid, &sys1);
            all1 = busy_seconds_all();
        }
        if (!running) {
            int busy = 0;
            for (int i = 0; i < opt.conns && !busy; i++) busy = cs[i].inflight > 0;
            if (!busy) break;
            if (t >= drain_until) { fprintf(stderr, "loadgen: replies overdue\n"); return 2; }
        }
        int n = epoll_wait(epfd, events, 256, 50);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        t = now_ns();
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                int done = read_conn(c, t, measuring);
                if (done < 0) { fprintf(stderr, "loadgen: the server closed a connection\n");
                                return 2; }
                if (measuring) units += done;
                while (running && c->inflight < opt.pipeline) queue_unit(c, t);
            }
            int pending = flush_out(c);
            struct epoll_event ev = {.events = EPOLLIN | (pending ? EPOLLOUT : 0), .data.ptr = c};
            if (pending || (events[e].events & EPOLLOUT)) epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    double secs = (double)(window_end - window_start) / 1e9;
    double self_pct = 100.0 * (cpu1 - cpu0) / secs;
    double server_pct = (server0 >= 0 && server1 >= 0) ? 100.0 * (server1 - server0) / secs : -1;
    double server_sys_pct = server_pct >= 0 ? 100.0 * (sys1 - sys0) / secs : -1;
    double all_pct = (all0 >= 0 && all1 >= 0) ? 100.0 * (all1 - all0) / secs : -1;
    double other_pct = all_pct - self_pct - (server_pct > 0 ? server_pct : 0);
    printf("ops_per_sec=%.0f units=%ld replies=%ld p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "errors=0 error_replies=%ld loadgen_cpu_pct=%.0f server_cpu_pct=%.0f "
           "server_sys_pct=%.1f other_cpu_pct=%.0f\n",
           (double)units / secs, units, replies_total, percentile_us(50), percentile_us(99),
           percentile_us(99.9), (double)hist_max / 1000.0, error_replies, self_pct,
           server_pct, server_sys_pct, all_pct >= 0 ? (other_pct > 0 ? other_pct : 0) : -1);
    return 0;
}
