/*
 * blast: a loopback OpenAI-compatible chat server for the benchmark.
 *
 * Serves a pre-rendered, realistic chat-completion stream as fast as the socket takes it:
 * one `data: {...}\n\n` event per token (about 250 bytes: id, object, created, model,
 * system_fingerprint, choices[0].delta.content, logprobs, finish_reason),
 * each event its own HTTP chunk (chunked transfer encoding, as servers that flush per
 * token send it), keep-alive, a role event first and a finish event and `data: [DONE]`
 * last. Tokens mix ASCII, Cyrillic and CJK, and a few need JSON escapes (newlines and
 * quotes), as real replies do.
 *
 * The reply has as many content tokens as the request's `max_tokens` (default 20).
 * Events are copied from a pre-rendered ring into 64 KiB writes, so the server spends
 * next to no CPU per token and the client is what is measured.
 *
 *   POST .../chat/completions   the stream
 *   GET  /stats                 {"connections":C,"requests":R,"accepted":A}: C counts the
 *                               connections that carried at least one chat request
 *
 * Usage: blast [PORT]   (0 or none: any free port). Prints "PORT n" on its first line.
 * Listens on 127.0.0.1 only. A thread per connection. Stops on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* A realistic mix: English words with their leading spaces, Russian, Chinese and
 * Japanese, punctuation, and tokens that JSON must escape. Written as JSON string
 * contents (already escaped). */
static const char *const TOKENS[] = {
    " The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".",
    " Streaming", " tokens", " arrive", " one", " by", " one", ",", " and", " every",
    " byte", " counts", "!", "\\n\\n", " Привет", ",", " мир", "!", " Потоковая",
    " передача", " токенов", " работает", " быстро", ".", "\\n", "你好", "，", "世界",
    "。", "流式", "传输", "每个", "令牌", "。", "日本語", "の", "テキスト", "も", "大丈夫",
    "です", "。", " He", " said", ":", " \\\"", "fast", "\\\"", " is", " good", ";",
    " 42", "%", " of", " the", " time",
};
#define NTOKENS (sizeof TOKENS / sizeof TOKENS[0])

#define PREFIX                                                                          \
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\"," \
    "\"created\":1741570283,\"model\":\"gpt-4o-mini\","  \
    "\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{\"index\":0,\"delta\":"

#define HEAD                                                                            \
    "HTTP/1.1 200 OK\r\n"                                                               \
    "Content-Type: text/event-stream; charset=utf-8\r\n"                                \
    "Transfer-Encoding: chunked\r\n"                                                    \
    "Connection: keep-alive\r\n"                                                        \
    "Cache-Control: no-cache\r\n"                                                       \
    "X-Request-Id: req_bench\r\n"                                                       \
    "\r\n"

static atomic_long accepted, chat_connections, chat_requests;

/* The ring: every token's event, HTTP-chunk encoded, back to back. */
static char *ring;
static size_t ring_off[NTOKENS + 1];
static char role_chunk[512], finish_chunk[512];
static size_t role_len, finish_len;
static const char done_chunk[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";

static size_t encode_event(char *out, size_t cap, const char *delta, const char *finish) {
    char event[1024];
    int n = snprintf(event, sizeof event, PREFIX "%s,\"logprobs\":null,\"finish_reason\":%s}]}\n\n",
                     delta, finish);
    int m = snprintf(out, cap, "%x\r\n%s\r\n", n, event);
    if (n <= 0 || m <= 0 || (size_t)m >= cap) {
        fprintf(stderr, "event too long\n");
        exit(1);
    }
    return (size_t)m;
}

static void render(void) {
    ring = malloc(NTOKENS * 512);
    size_t off = 0;
    for (size_t i = 0; i < NTOKENS; i++) {
        char delta[256];
        snprintf(delta, sizeof delta, "{\"content\":\"%s\"}", TOKENS[i]);
        ring_off[i] = off;
        off += encode_event(ring + off, 512, delta, "null");
    }
    ring_off[NTOKENS] = off;
    role_len = encode_event(role_chunk, sizeof role_chunk,
                            "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}", "null");
    finish_len = encode_event(finish_chunk, sizeof finish_chunk, "{}", "\"stop\"");
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

#define OUT_CAP (64 * 1024)

struct out {
    int fd;
    size_t len;
    char buf[OUT_CAP];
};

static int out_put(struct out *o, const char *p, size_t n) {
    if (o->len + n > OUT_CAP) {
        if (write_all(o->fd, o->buf, o->len) < 0)
            return -1;
        o->len = 0;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static int serve_stream(struct out *o, long tokens) {
    o->len = 0;
    if (out_put(o, HEAD, sizeof HEAD - 1) < 0 || out_put(o, role_chunk, role_len) < 0)
        return -1;
    for (long i = 0; i < tokens; i++) {
        size_t t = (size_t)i % NTOKENS;
        if (out_put(o, ring + ring_off[t], ring_off[t + 1] - ring_off[t]) < 0)
            return -1;
    }
    if (out_put(o, finish_chunk, finish_len) < 0 || out_put(o, done_chunk, sizeof done_chunk - 1) < 0)
        return -1;
    return write_all(o->fd, o->buf, o->len);
}

static const char *find_header(const char *head, size_t head_len, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = head; p && p < head + head_len;) {
        const char *eol = memmem(p, (size_t)(head + head_len - p), "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

static long body_number(const char *body, size_t len, const char *key) {
    const char *p = memmem(body, len, key, strlen(key));
    if (!p)
        return -1;
    p += strlen(key);
    while (p < body + len && (*p == '"' || *p == ':' || *p == ' '))
        p++;
    return strtol(p, NULL, 10);
}

#define IN_CAP (256 * 1024)

static void *connection(void *arg) {
    int fd = (int)(long)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *in = malloc(IN_CAP);
    struct out *o = malloc(sizeof *o);
    o->fd = fd;
    size_t have = 0;
    int counted = 0;
    for (;;) {
        /* Read a request head. */
        char *end;
        while (!(end = memmem(in, have, "\r\n\r\n", 4))) {
            if (have == IN_CAP)
                goto done;
            ssize_t r = recv(fd, in + have, IN_CAP - have, 0);
            if (r <= 0)
                goto done;
            have += (size_t)r;
        }
        size_t head_len = (size_t)(end - in) + 4;
        const char *cl = find_header(in, head_len, "Content-Length");
        const char *te = find_header(in, head_len, "Transfer-Encoding");
        const char *conn = find_header(in, head_len, "Connection");
        int close_after = conn && strncasecmp(conn, "close", 5) == 0;
        size_t body_len = cl ? (size_t)strtoul(cl, NULL, 10) : 0;
        size_t total;
        if (te && strncasecmp(te, "chunked", 7) == 0) {
            /* Rare here: take everything up to the last chunk as the body. */
            char *last;
            while (!(last = memmem(in + head_len, have - head_len, "0\r\n\r\n", 5))) {
                if (have == IN_CAP)
                    goto done;
                ssize_t r = recv(fd, in + have, IN_CAP - have, 0);
                if (r <= 0)
                    goto done;
                have += (size_t)r;
            }
            total = (size_t)(last - in) + 5;
            body_len = total - head_len;
        } else {
            if (head_len + body_len > IN_CAP)
                goto done;
            while (have < head_len + body_len) {
                ssize_t r = recv(fd, in + have, IN_CAP - have, 0);
                if (r <= 0)
                    goto done;
                have += (size_t)r;
            }
            total = head_len + body_len;
        }
        int rc;
        if (strncmp(in, "GET /stats", 10) == 0) {
            char reply[256], json[160];
            int jn = snprintf(json, sizeof json, "{\"connections\":%ld,\"requests\":%ld,\"accepted\":%ld}\n",
                              atomic_load(&chat_connections), atomic_load(&chat_requests),
                              atomic_load(&accepted));
            int n = snprintf(reply, sizeof reply,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             "Connection: close\r\n\r\n%s", jn, json);
            write_all(fd, reply, (size_t)n);
            goto done;
        } else if (strncmp(in, "POST ", 5) == 0 && memmem(in, head_len, "/chat/completions", 17)) {
            if (!counted) {
                counted = 1;
                atomic_fetch_add(&chat_connections, 1);
            }
            atomic_fetch_add(&chat_requests, 1);
            long tokens = body_number(in + head_len, body_len, "\"max_tokens\"");
            if (tokens < 0)
                tokens = body_number(in + head_len, body_len, "\"max_completion_tokens\"");
            if (tokens < 0)
                tokens = 20;
            rc = serve_stream(o, tokens);
        } else {
            static const char nf[] =
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n"
                "{\"error\":{\"message\":\"blast: not found\"}}";
            rc = write_all(fd, nf, sizeof nf - 1);
        }
        if (rc < 0 || close_after)
            goto done;
        memmove(in, in + total, have - total);
        have -= total;
    }
done:
    shutdown(fd, SHUT_WR);
    close(fd);
    free(in);
    free(o);
    return NULL;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);
    render();
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)port);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 1024) < 0) {
        perror("blast: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(ls, (struct sockaddr *)&addr, &alen);
    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
                continue;
            perror("blast: accept");
            return 1;
        }
        atomic_fetch_add(&accepted, 1);
        pthread_t t;
        if (pthread_create(&t, &attr, connection, (void *)(long)fd) != 0)
            close(fd);
    }
}
