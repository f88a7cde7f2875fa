/*
 * Benchmark client: libylokh through its C ABI, and a raw-socket floor.
 *
 *   ylokh_bench --client ylokh|ylokh-pull|raw --base-url URL --workload W [--tokens N]
 *               [--calls K] [--streams S]
 *
 * Workloads: stream (one reply of N tokens), seq (K replies of N tokens on one client),
 * seqnew (K replies, a new client per call), concurrent (S threads each streaming N
 * tokens at once on one shared client; for ylokh-pull, S streams pulled by ONE thread
 * that poll()s their descriptors), scale (S replies of N tokens on one client, all
 * mid-stream at once when the RSS is sampled: rss_mid_kb).
 *
 * With YLOKH_BENCH_SMAPS=FILE in the environment, the scale workload also copies
 * /proc/self/smaps to FILE when it samples the RSS (to see where the memory is: thread
 * stacks, malloc arenas, ...).
 *
 * ylokh-pull uses the pull API: ylokh_stream_open, then ylokh_stream_next waiting for
 * each event (or, for concurrent and scale, poll() on ylokh_stream_fd and next with wait 0).
 *
 * Prints one JSON line: calls, tokens and bytes received (content tokens for ylokh; for
 * raw, HTTP body bytes), cpu_s (getrusage RUSAGE_SELF, user + system, around the calls
 * only), wall_s, ttft_us and call_us (medians over the second and later calls, or the one
 * call), rss_before_kb (VmRSS just before the first call) and hwm_after_kb (VmHWM after
 * the last).
 *
 * The raw client is the floor for one connection's work: a blocking socket that writes
 * the request and reads the reply into a 64 KiB buffer until the chunked body's end,
 * parsing nothing else. Its ttft_us is the time to the first byte of the reply; with the
 * blast server the first byte and the first token arrive in the same segment.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ylokh.h"

static const char *MESSAGES = "[{\"role\":\"user\",\"content\":\"Write a long story.\"}]";
static const char *MODEL = "gpt-4o-mini";

static const char *client_kind = "ylokh";
static const char *base_url = "http://127.0.0.1:8080/v1";
static const char *workload = "stream";
static long tokens = 20, calls = 1, streams = 1;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = strtol(line + n, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* The RSS now; with YLOKH_BENCH_SMAPS set, also a copy of /proc/self/smaps. */
static long sample_mid(void) {
    long rss = status_kb("VmRSS:");
    const char *path = getenv("YLOKH_BENCH_SMAPS");
    if (path && *path) {
        FILE *in = fopen("/proc/self/smaps", "r"), *out = fopen(path, "w");
        char buf[4096];
        size_t n;
        while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
            fwrite(buf, 1, n, out);
        if (in)
            fclose(in);
        if (out)
            fclose(out);
    }
    return rss;
}

struct call {
    long tokens, bytes;
    double start, ttft, total;
};

static int on_token(void *userdata, const char *token, size_t len) {
    struct call *c = userdata;
    (void)token;
    if (c->tokens++ == 0)
        c->ttft = now_s() - c->start;
    c->bytes += (long)len;
    return 0;
}

static char options[64];

static void ylokh_call(ylokh_client *client, struct call *c) {
    c->start = now_s();
    ylokh_status st = ylokh_chat(client, MODEL, MESSAGES, options, on_token, c);
    c->total = now_s() - c->start;
    if (st != YLOKH_OK) {
        fprintf(stderr, "ylokh_chat: %s: %s\n", ylokh_status_str(st), ylokh_last_error());
        exit(1);
    }
}

static int is_pull(void) { return strcmp(client_kind, "ylokh-pull") == 0; }

static ylokh_stream *pull_open(ylokh_client *client) {
    ylokh_request req;
    ylokh_stream *s = NULL;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.model = MODEL;
    req.messages_json = MESSAGES;
    req.options_json = options;
    if (ylokh_stream_open(client, &req, &s) != YLOKH_OK) {
        fprintf(stderr, "ylokh_stream_open: %s\n", ylokh_last_error());
        exit(1);
    }
    return s;
}

/* Takes what ylokh_stream_next gave: 1 while the stream goes on, 0 at its end. */
static int pull_take(struct call *c, ylokh_status st, const ylokh_event *e) {
    if (st == YLOKH_E_AGAIN) return 1;
    if (st != YLOKH_OK) {
        fprintf(stderr, "ylokh_stream_next: %s: %s\n", ylokh_status_str(st), ylokh_last_error());
        exit(1);
    }
    if (e == NULL) {
        c->total = now_s() - c->start;
        return 0;
    }
    if (e->kind == YLOKH_EVENT_CONTENT && e->choice == 0) on_token(c, e->text, e->text_len);
    return 1;
}

static void pull_call(ylokh_client *client, struct call *c) {
    const ylokh_event *e = NULL;
    c->start = now_s();
    ylokh_stream *s = pull_open(client);
    for (;;) {
        ylokh_status st = ylokh_stream_next(s, UINT64_MAX, &e);
        if (!pull_take(c, st, e)) break;
    }
    ylokh_stream_close(s);
}

/* S streams from this one thread: poll() on their descriptors, drain each ready one with
 * wait 0. With `mid`, first wait until every stream has delivered a token and sample the
 * RSS then (*mid). */
static void pull_poll(ylokh_client *client, struct call *cs, long n, long *mid) {
    ylokh_stream **s = calloc((size_t)n, sizeof *s);
    struct pollfd *fds = calloc((size_t)n, sizeof *fds);
    long *map = calloc((size_t)n, sizeof *map);
    long left = n, started = 0;
    for (long i = 0; i < n; i++) {
        cs[i].start = now_s();
        s[i] = pull_open(client);
    }
    while (left > 0) {
        long k = 0;
        for (long i = 0; i < n; i++) {
            if (s[i] == NULL || (mid && started < n && cs[i].tokens > 0)) continue;
            fds[k].fd = ylokh_stream_fd(s[i]);
            fds[k].events = POLLIN;
            map[k++] = i;
        }
        if (mid && started == n) {
            *mid = sample_mid();
            started = n + 1; /* sampled once */
            continue;
        }
        if (poll(fds, (nfds_t)k, -1) < 0) {
            perror("poll");
            exit(1);
        }
        for (long j = 0; j < k; j++) {
            long i = map[j];
            const ylokh_event *e = NULL;
            if (!(fds[j].revents & POLLIN)) continue;
            for (;;) {
                int had = cs[i].tokens > 0;
                ylokh_status st = ylokh_stream_next(s[i], 0, &e);
                if (st == YLOKH_E_AGAIN) break;
                if (!pull_take(&cs[i], st, e)) {
                    ylokh_stream_close(s[i]);
                    s[i] = NULL;
                    left--;
                    break;
                }
                /* Hold each stream after its first token until all have one. */
                if (mid && started < n && !had && cs[i].tokens > 0) {
                    started++;
                    break;
                }
            }
        }
    }
    free(s);
    free(fds);
    free(map);
}

static ylokh_client *new_client(void) {
    ylokh_client *c = ylokh_client_new();
    if (!c || ylokh_client_set_base_url(c, base_url) != YLOKH_OK ||
        ylokh_client_set_api_key(c, "sk-bench") != YLOKH_OK) {
        fprintf(stderr, "client setup: %s\n", ylokh_last_error());
        exit(1);
    }
    ylokh_client_set_proxy_from_env(c, 0);
    return c;
}

/* ---- the raw-socket floor ---- */

struct raw {
    int fd;
    char req[1024];
    size_t req_len;
    struct sockaddr_in addr;
};

static void raw_init(struct raw *r) {
    unsigned a, b, c, d, port;
    if (sscanf(base_url, "http://%u.%u.%u.%u:%u", &a, &b, &c, &d, &port) != 5) {
        fprintf(stderr, "raw client needs http://A.B.C.D:PORT/... (got %s)\n", base_url);
        exit(1);
    }
    const char *path = strchr(base_url + 7, '/');
    memset(&r->addr, 0, sizeof r->addr);
    r->addr.sin_family = AF_INET;
    r->addr.sin_port = htons((uint16_t)port);
    r->addr.sin_addr.s_addr = htonl((a << 24) | (b << 16) | (c << 8) | d);
    char body[256];
    int bl = snprintf(body, sizeof body,
                      "{\"model\":\"%s\",\"messages\":%s,\"stream\":true,\"max_tokens\":%ld}", MODEL,
                      MESSAGES, tokens);
    r->req_len = (size_t)snprintf(r->req, sizeof r->req,
                                  "POST %s/chat/completions HTTP/1.1\r\nHost: %u.%u.%u.%u:%u\r\n"
                                  "Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"
                                  "Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
                                  path ? path : "", a, b, c, d, port, bl, body);
    r->fd = -1;
}

static void raw_call(struct raw *r, struct call *c, int reuse) {
    /* On the heap: a thread-local buffer would be in every thread's static TLS, which
     * glibc zeroes (so makes resident) for each thread the process starts, libylokh's
     * stream threads included. */
    char *buf = malloc(64 * 1024);
    if (buf == NULL) abort();
    c->start = now_s();
    if (r->fd < 0 || !reuse) {
        if (r->fd >= 0)
            close(r->fd);
        r->fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(r->fd, (struct sockaddr *)&r->addr, sizeof r->addr) < 0) {
            perror("connect");
            exit(1);
        }
    }
    if (write(r->fd, r->req, r->req_len) != (ssize_t)r->req_len) {
        perror("write");
        exit(1);
    }
    char tail[8] = {0};
    for (;;) {
        ssize_t n = read(r->fd, buf, 64 * 1024);
        if (n <= 0) {
            fprintf(stderr, "raw: connection ended early\n");
            exit(1);
        }
        if (c->bytes == 0)
            c->ttft = now_s() - c->start;
        c->bytes += n;
        /* The body ends with the last chunk, "\r\n0\r\n\r\n"; keep the last 7 bytes. */
        if (n >= 7) {
            memcpy(tail, buf + n - 7, 7);
        } else {
            memmove(tail, tail + n, (size_t)(7 - n));
            memcpy(tail + 7 - n, buf, (size_t)n);
        }
        if (memcmp(tail, "\r\n0\r\n\r\n", 7) == 0)
            break;
    }
    c->total = now_s() - c->start;
    free(buf);
    if (!reuse) {
        close(r->fd);
        r->fd = -1;
    }
}

/* ---- workloads ---- */

struct thread_arg {
    ylokh_client *client;
    struct call call;
};

/* All threads start their call at once, so that the streams really run concurrently. */
static pthread_barrier_t start_line;

/* scale: every thread's callback waits here after its first token until the main thread
 * has sampled the RSS, so that all replies are mid-stream at once. */
static pthread_barrier_t all_started, sampled;

static int on_token_hold(void *userdata, const char *token, size_t len) {
    struct call *c = userdata;
    if (c->tokens == 0) {
        pthread_barrier_wait(&all_started);
        pthread_barrier_wait(&sampled);
    }
    return on_token(userdata, token, len);
}

static void *scale_thread(void *p) {
    struct thread_arg *t = p;
    struct call *c = &t->call;
    c->start = now_s();
    ylokh_status st = ylokh_chat(t->client, MODEL, MESSAGES, options, on_token_hold, c);
    c->total = now_s() - c->start;
    if (st != YLOKH_OK) {
        fprintf(stderr, "ylokh_chat: %s: %s\n", ylokh_status_str(st), ylokh_last_error());
        exit(1);
    }
    return NULL;
}

static void *stream_thread(void *p) {
    struct thread_arg *t = p;
    pthread_barrier_wait(&start_line);
    if (strcmp(client_kind, "raw") == 0) {
        struct raw r;
        raw_init(&r);
        raw_call(&r, &t->call, 0);
    } else {
        ylokh_call(t->client, &t->call);
    }
    return NULL;
}

/* Calls of the chosen ylokh API. */
static void api_call(ylokh_client *client, struct call *c) {
    if (is_pull())
        pull_call(client, c);
    else
        ylokh_call(client, c);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(struct call *cs, long n, int ttft) {
    long skip = n > 1 ? 1 : 0;
    long m = n - skip;
    double *v = malloc(sizeof(double) * (size_t)(m > 0 ? m : 1));
    for (long i = 0; i < m; i++)
        v[i] = (ttft ? cs[i + skip].ttft : cs[i + skip].total) * 1e6;
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    double r = m > 0 ? v[m / 2] : 0;
    free(v);
    return r;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--client"))
            client_kind = v;
        else if (!strcmp(k, "--base-url"))
            base_url = v;
        else if (!strcmp(k, "--workload"))
            workload = v;
        else if (!strcmp(k, "--tokens"))
            tokens = atol(v);
        else if (!strcmp(k, "--calls"))
            calls = atol(v);
        else if (!strcmp(k, "--streams"))
            streams = atol(v);
        else {
            fprintf(stderr, "unknown option %s\n", k);
            return 2;
        }
    }
    snprintf(options, sizeof options, "{\"max_tokens\":%ld}", tokens);
    int raw = strcmp(client_kind, "raw") == 0;
    int is_seq = !strcmp(workload, "seq"), is_seqnew = !strcmp(workload, "seqnew");
    int is_conc = !strcmp(workload, "concurrent"), is_scale = !strcmp(workload, "scale");
    long n = is_seq || is_seqnew ? calls : is_conc || is_scale ? streams : 1;
    long rss_mid = 0;
    {
        /* A thousand replies need a few thousand descriptors. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    struct call *cs = calloc((size_t)n, sizeof *cs);
    struct thread_arg *ts = calloc((size_t)n, sizeof *ts);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    struct raw r;
    ylokh_client *client = NULL;
    if (raw)
        raw_init(&r);
    else if (!is_seqnew)
        client = new_client();

    long rss_before = status_kb("VmRSS:");
    double c0 = cpu_s(), w0 = now_s();
    if (is_scale && is_pull()) {
        pull_poll(client, cs, n, &rss_mid);
    } else if (is_scale) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        pthread_barrier_init(&all_started, NULL, (unsigned)n + 1);
        pthread_barrier_init(&sampled, NULL, (unsigned)n + 1);
        for (long i = 0; i < n; i++) {
            ts[i].client = client;
            if (pthread_create(&th[i], &attr, scale_thread, &ts[i]) != 0) {
                fprintf(stderr, "pthread_create failed at %ld\n", i);
                exit(1);
            }
        }
        pthread_barrier_wait(&all_started);
        rss_mid = sample_mid();
        pthread_barrier_wait(&sampled);
        for (long i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            cs[i] = ts[i].call;
        }
    } else if (is_conc && is_pull()) {
        pull_poll(client, cs, n, NULL);
    } else if (is_conc) {
        pthread_barrier_init(&start_line, NULL, (unsigned)n);
        for (long i = 0; i < n; i++) {
            ts[i].client = client;
            pthread_create(&th[i], NULL, stream_thread, &ts[i]);
        }
        for (long i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            cs[i] = ts[i].call;
        }
    } else {
        for (long i = 0; i < n; i++) {
            if (raw) {
                raw_call(&r, &cs[i], !is_seqnew);
            } else if (is_seqnew) {
                ylokh_client *c = new_client();
                api_call(c, &cs[i]);
                ylokh_client_free(c);
            } else {
                api_call(client, &cs[i]);
            }
        }
    }
    double wall = now_s() - w0, cpu = cpu_s() - c0;
    long hwm_after = status_kb("VmHWM:");
    long total_tokens = 0, total_bytes = 0;
    for (long i = 0; i < n; i++) {
        total_tokens += cs[i].tokens;
        total_bytes += cs[i].bytes;
    }
    printf("{\"client\":\"%s\",\"calls\":%ld,\"tokens\":%ld,\"bytes\":%ld,\"cpu_s\":%.6f,"
           "\"wall_s\":%.6f,\"ttft_us\":%.1f,\"call_us\":%.1f,\"rss_before_kb\":%ld,"
           "\"hwm_after_kb\":%ld,\"rss_mid_kb\":%ld}\n",
           client_kind, n, total_tokens, total_bytes, cpu, wall, median_of(cs, n, 1),
           median_of(cs, n, 0), rss_before, hwm_after, rss_mid);
    if (client)
        ylokh_client_free(client);
    free(cs);
    free(ts);
    free(th);
    return 0;
}
