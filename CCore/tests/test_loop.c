/* The event loop over real sockets on 127.0.0.1 and real threads. Every test ends on an event
 * the loop itself reports; the one-shot "deadline" timers are safety nets, never synchronisation.
 * Where a loop runs on another thread, its callbacks only count, and CHECKs run after the join. */
#include "ef_test.h"

#include "elasticflow.h"
#include "elasticflow_testing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void fill(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = ef_test_rand(&s);
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = ef_test_rand(&s);
        memcpy(p + i, &v, n - i);
    }
}

static bool filled(const uint8_t *p, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = ef_test_rand(&s);
        if (memcmp(p + i, &v, 8) != 0)
            return false;
    }
    if (i < n) {
        uint64_t v = ef_test_rand(&s);
        if (memcmp(p + i, &v, n - i) != 0)
            return false;
    }
    return true;
}

/* header + payload into out; returns the frame's size. */
static size_t encode(uint8_t *out, uint8_t type, uint64_t id, const uint8_t *payload, size_t len) {
    struct iovec iov[2];
    if (ef_frame_encode(out, type, 0, 0, 0, id, payload, len, iov) < 0)
        return 0;
    if (len)
        memcpy(out + EF_FRAME_HEADER_SIZE, payload, len);
    return EF_FRAME_HEADER_SIZE + len;
}

static uint16_t local_port(int fd) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
        return 0;
    return ntohs(sa.sin_port);
}

/* A plain blocking client socket, connected (the listener's backlog accepts it even before the
 * loop runs). rcvbuf > 0 shrinks its receive buffer so back-pressure comes quickly. */
int raw_connect(uint16_t port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool write_all_file(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* The port in "host:port" from ef_loop_peer. */
static uint16_t peer_port(ef_loop *loop, uint64_t conn) {
    char text[64];
    if (ef_loop_peer(loop, conn, text, sizeof text) < 0)
        return 0;
    const char *colon = strrchr(text, ':');
    return colon ? (uint16_t)atoi(colon + 1) : 0;
}

typedef struct runner {
    ef_loop *loop;
    int rc;
} runner;

static void *run_thread(void *arg) {
    runner *r = arg;
    r->rc = ef_loop_run(r->loop);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* 10,000 frames of 0..300 KiB between two loops on two threads, echoed and checked            */
/* ------------------------------------------------------------------------------------------ */

#define XCH_FRAMES 10000
#define XCH_MAX (300u * 1024u)
#define XCH_SRC (2u * XCH_MAX)

typedef struct xch {
    uint32_t sizes[XCH_FRAMES];
    uint8_t *src; /* what zero-copy frames point into; never changes */
    /* server side (its thread only) */
    ef_loop *srv;
    uint64_t srv_conn, srv_deadline;
    bool srv_paused;
    int srv_pauses, srv_errors, srv_frames, srv_closes, srv_reason, srv_timeout;
    /* client side (its thread only) */
    ef_loop *cli;
    uint64_t cli_conn, cli_deadline;
    uint8_t *scratch;
    uint32_t next_send, next_recv;
    int connect_status, cli_busy, cli_drains, cli_errors, cli_bad, cli_closes, cli_reason;
    int cli_timeout, ref_sent, released;
} xch;

static uint8_t xch_type(uint32_t i) { return i % 2 ? EF_FRAME_PARCEL : EF_FRAME_RESULT; }
static uint32_t xch_aux(uint32_t i) { return i * 2654435761u; }
static bool xch_is_ref(uint32_t i) { return i % 3 == 0; }
static size_t xch_offset(const xch *x, uint32_t i) {
    return (size_t)((uint64_t)i * 104729u % (XCH_SRC - x->sizes[i] + 1));
}

static void xch_release(void *ctx) { ((xch *)ctx)->released++; }

static void xch_send_more(ef_loop *loop, xch *x) {
    while (x->next_send < XCH_FRAMES) {
        uint32_t i = x->next_send, n = x->sizes[i];
        int rc;
        if (xch_is_ref(i)) {
            rc = ef_loop_send_ref(loop, x->cli_conn, xch_type(i), i & 1, i % 3, xch_aux(i), i,
                                  x->src + xch_offset(x, i), n, xch_release, x);
            if (rc == EF_OK)
                x->ref_sent++;
        } else {
            fill(x->scratch, n, i + 1);
            rc = ef_loop_send(loop, x->cli_conn, xch_type(i), i & 1, i % 3, xch_aux(i), i,
                              x->scratch, n);
            /* The loop copied it or wrote it: scribbling over it must not matter. */
            memset(x->scratch, 0xEE, n);
        }
        if (rc == EF_EBUSY) {
            x->cli_busy++;
            return;
        }
        if (rc != EF_OK) {
            x->cli_errors++;
            return;
        }
        x->next_send++;
    }
}

static void xch_cli_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    xch *x = user;
    x->connect_status = status;
    if (status == EF_OK && conn == x->cli_conn)
        xch_send_more(loop, x);
}

static void xch_cli_drain(ef_loop *loop, void *user, uint64_t conn) {
    xch *x = user;
    (void)conn;
    x->cli_drains++;
    xch_send_more(loop, x);
}

static void xch_cli_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    xch *x = user;
    uint32_t i = x->next_recv++;
    if (i >= XCH_FRAMES || f->id != i || f->payload.len != x->sizes[i] || f->type != xch_type(i) ||
        f->flags != (i & 1) || f->codec != i % 3 || f->aux != xch_aux(i)) {
        x->cli_bad++;
    } else if (xch_is_ref(i)) {
        if (f->payload.len && memcmp(f->payload.ptr, x->src + xch_offset(x, i), f->payload.len))
            x->cli_bad++;
    } else if (!filled(f->payload.ptr, f->payload.len, i + 1)) {
        x->cli_bad++;
    }
    if (x->next_recv == XCH_FRAMES)
        ef_loop_close(loop, conn, 1);
}

static void xch_cli_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    xch *x = user;
    (void)conn;
    x->cli_closes++;
    x->cli_reason = reason;
    ef_loop_stop(loop);
}

static void xch_cli_timer(ef_loop *loop, void *user, uint64_t timer) {
    xch *x = user;
    if (timer == x->cli_deadline) {
        x->cli_timeout = 1;
        ef_loop_stop(loop);
    }
}

static void xch_srv_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    (void)loop;
    (void)listener;
    ((xch *)user)->srv_conn = conn;
}

static void xch_srv_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    xch *x = user;
    x->srv_frames++;
    /* Echo from the read buffer's view: the loop copies it before the view goes away. */
    if (ef_loop_send(loop, conn, f->type, f->flags, f->codec, f->aux, f->id, f->payload.ptr,
                     f->payload.len) != EF_OK)
        x->srv_errors++;
    /* Receive-side back-pressure: stop reading while our own queue is full. */
    if (ef_loop_pending(loop, conn) >= (int64_t)(1u << 20) && !x->srv_paused) {
        x->srv_paused = true;
        x->srv_pauses++;
        ef_loop_pause(loop, conn, 1);
    }
}

static void xch_srv_drain(ef_loop *loop, void *user, uint64_t conn) {
    xch *x = user;
    if (x->srv_paused) {
        x->srv_paused = false;
        ef_loop_pause(loop, conn, 0);
    }
}

static void xch_srv_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    xch *x = user;
    (void)conn;
    x->srv_closes++;
    x->srv_reason = reason;
    ef_loop_stop(loop);
}

static void xch_srv_timer(ef_loop *loop, void *user, uint64_t timer) {
    xch *x = user;
    if (timer == x->srv_deadline) {
        x->srv_timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_exchange_10k(ef_t *t) {
    xch *x = calloc(1, sizeof *x);
    CHECK(t, x != NULL);
    if (!x)
        return;
    x->src = malloc(XCH_SRC);
    x->scratch = malloc(XCH_MAX);
    CHECK(t, x->src && x->scratch);
    if (!x->src || !x->scratch)
        goto out;
    fill(x->src, XCH_SRC, 4242);

    /* Sizes spread over every magnitude up to 300 KiB (about 140 MB each way in all). */
    uint64_t seed = 20240601;
    for (uint32_t i = 0; i < XCH_FRAMES; i++) {
        uint64_t r = ef_test_rand(&seed);
        uint32_t size;
        if (r % 32 == 0)
            size = (uint32_t)((r >> 8) % (XCH_MAX + 1));
        else if (r % 128 == 1)
            size = XCH_MAX;
        else if (r % 32 == 2)
            size = 0;
        else
            size = (uint32_t)((r >> 8) % (1u << ((r >> 40) % 18)));
        x->sizes[i] = size;
    }
    x->sizes[1] = XCH_MAX;
    x->sizes[2] = 0;

    ef_loop_config sc = {0};
    sc.user = x;
    sc.on_accept = xch_srv_accept;
    sc.on_frame = xch_srv_frame;
    sc.on_close = xch_srv_close;
    sc.on_drain = xch_srv_drain;
    sc.on_timer = xch_srv_timer;
    sc.max_payload = XCH_MAX; /* the largest frame is exactly at the limit */
    sc.send_high_water = 1u << 20;
    sc.send_low_water = 256u << 10;
    ef_loop_config cc = sc;
    cc.on_accept = NULL;
    cc.on_connect = xch_cli_connect;
    cc.on_frame = xch_cli_frame;
    cc.on_close = xch_cli_close;
    cc.on_drain = xch_cli_drain;
    cc.on_timer = xch_cli_timer;
    cc.send_low_water = 512u << 10;

    int err;
    x->srv = ef_loop_create(&sc, &err);
    x->cli = ef_loop_create(&cc, &err);
    CHECK(t, x->srv && x->cli);
    if (!x->srv || !x->cli)
        goto out;
    uint64_t lid;
    uint16_t port = 0;
    CHECK_EQ(t, ef_loop_listen(x->srv, "127.0.0.1", 0, &lid, &port), EF_OK);
    CHECK(t, port != 0);
    CHECK_EQ(t, ef_loop_connect(x->cli, "127.0.0.1", port, &x->cli_conn), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(x->srv, 60000, 0, &x->srv_deadline), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(x->cli, 60000, 0, &x->cli_deadline), EF_OK);

    runner rs = {x->srv, -1}, rcl = {x->cli, -1};
    pthread_t ts, tc;
    CHECK_EQ(t, pthread_create(&ts, NULL, run_thread, &rs), 0);
    CHECK_EQ(t, pthread_create(&tc, NULL, run_thread, &rcl), 0);
    pthread_join(tc, NULL);
    pthread_join(ts, NULL);

    CHECK_EQ(t, rs.rc, EF_OK);
    CHECK_EQ(t, rcl.rc, EF_OK);
    CHECK_EQ(t, x->srv_timeout, 0);
    CHECK_EQ(t, x->cli_timeout, 0);
    CHECK_EQ(t, x->connect_status, EF_OK);
    CHECK_EQ(t, x->next_send, XCH_FRAMES);
    CHECK_EQ(t, x->next_recv, XCH_FRAMES);
    CHECK_EQ(t, x->srv_frames, XCH_FRAMES);
    CHECK_EQ(t, x->cli_bad, 0);
    CHECK_EQ(t, x->cli_errors, 0);
    CHECK_EQ(t, x->srv_errors, 0);
    CHECK_EQ(t, x->released, x->ref_sent);
    CHECK(t, x->ref_sent > 3000);
    /* Both directions really were pushed back at least once. */
    CHECK(t, x->cli_busy > 0);
    CHECK(t, x->cli_drains > 0);
    CHECK_EQ(t, x->cli_closes, 1);
    CHECK_EQ(t, x->cli_reason, EF_OK);
    CHECK_EQ(t, x->srv_closes, 1);
    CHECK_EQ(t, x->srv_reason, EF_OK);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < XCH_FRAMES; i++)
        bytes += x->sizes[i];
    printf("  exchange: %.0f MB each way; client pushed back %d times, server paused %d times\n",
           (double)bytes / 1e6, x->cli_busy, x->srv_pauses);
out:
    ef_loop_free(x->srv);
    ef_loop_free(x->cli);
    free(x->src);
    free(x->scratch);
    free(x);
}

/* ------------------------------------------------------------------------------------------ */
/* A peer writing frames one byte at a time                                                   */
/* ------------------------------------------------------------------------------------------ */

static const size_t byte1_sizes[] = {0, 1, 100, 300};
#define BYTE1_FRAMES (sizeof byte1_sizes / sizeof byte1_sizes[0])

typedef struct byte1 {
    ef_t *t;
    int raw;
    uint8_t stream[2048];
    size_t len, pos;
    int frames, closes, reason, timeout;
    uint64_t conn, deadline;
} byte1;

static void byte1_feed(ef_loop *loop, void *arg) {
    byte1 *b = arg;
    /* One byte per turn of the loop: between two posts, the loop reads what has arrived. */
    CHECK(b->t, write_all(b->raw, b->stream + b->pos, 1));
    if (++b->pos < b->len) {
        CHECK_EQ(b->t, ef_loop_post(loop, byte1_feed, b), EF_OK);
    } else {
        close(b->raw);
        b->raw = -1;
    }
}

static void byte1_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    byte1 *b = user;
    (void)listener;
    b->conn = conn;
    CHECK_EQ(b->t, ef_loop_post(loop, byte1_feed, b), EF_OK);
}

static void byte1_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    byte1 *b = user;
    (void)loop;
    (void)conn;
    size_t k = (size_t)b->frames++;
    CHECK(b->t, k < BYTE1_FRAMES);
    if (k >= BYTE1_FRAMES)
        return;
    CHECK_EQ(b->t, f->id, 100 + k);
    CHECK_EQ(b->t, f->type, EF_FRAME_PARCEL);
    CHECK_EQ(b->t, f->payload.len, byte1_sizes[k]);
    CHECK(b->t, filled(f->payload.ptr, f->payload.len, 7 + k));
}

static void byte1_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    byte1 *b = user;
    CHECK_EQ(b->t, conn, b->conn);
    b->closes++;
    b->reason = reason;
    ef_loop_stop(loop);
}

static void byte1_timer(ef_loop *loop, void *user, uint64_t timer) {
    byte1 *b = user;
    if (timer == b->deadline) {
        b->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_one_byte_at_a_time(ef_t *t) {
    byte1 b = {.t = t, .raw = -1};
    for (size_t k = 0; k < BYTE1_FRAMES; k++) {
        uint8_t payload[512];
        fill(payload, byte1_sizes[k], 7 + k);
        b.len += encode(b.stream + b.len, EF_FRAME_PARCEL, 100 + k, payload, byte1_sizes[k]);
    }
    ef_loop_config cfg = {0};
    cfg.user = &b;
    cfg.on_accept = byte1_accept;
    cfg.on_frame = byte1_frame;
    cfg.on_close = byte1_close;
    cfg.on_timer = byte1_timer;
    cfg.read_buffer = 64; /* the 300-byte frame makes the buffer grow mid-stream */
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    b.raw = raw_connect(port, 0);
    CHECK(t, b.raw >= 0);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &b.deadline), EF_OK);
    if (b.raw >= 0)
        CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, b.timeout, 0);
    CHECK_EQ(t, b.pos, b.len);
    CHECK_EQ(t, b.frames, (int)BYTE1_FRAMES);
    CHECK_EQ(t, b.closes, 1);
    CHECK_EQ(t, b.reason, EF_OK);
    if (b.raw >= 0)
        close(b.raw);
    ef_loop_free(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* Bad frames close their own connection only                                                 */
/* ------------------------------------------------------------------------------------------ */

enum {
    BAD_GOOD,
    BAD_GARBAGE,
    BAD_CHECKSUM,
    BAD_HDRCHECKSUM,
    BAD_TOOLONG,
    BAD_VERSION,
    BAD_TYPE,
    BAD_TRUNCATED,
    BAD_PEERS
};

typedef struct bad {
    ef_t *t;
    int raw[BAD_PEERS];
    uint16_t raw_port[BAD_PEERS];
    uint64_t conn[BAD_PEERS];
    int reason[BAD_PEERS], closes[BAD_PEERS];
    int bad_closed, good_frames, timeout;
    bool second_sent;
    uint64_t deadline;
} bad;

static const uint8_t bad_hello[] = "hello";
static const uint8_t bad_again[] = "still here";

static int bad_peer_of(const bad *b, uint64_t conn) {
    for (int i = 0; i < BAD_PEERS; i++)
        if (b->conn[i] == conn)
            return i;
    return -1;
}

/* Once every bad peer is gone, the good one speaks again. */
static void bad_maybe_continue(bad *b) {
    if (b->second_sent || b->bad_closed != BAD_PEERS - 1 || b->good_frames != 1)
        return;
    uint8_t frame[64];
    size_t n = encode(frame, EF_FRAME_RESULT, 2, bad_again, sizeof bad_again - 1);
    CHECK(b->t, write_all(b->raw[BAD_GOOD], frame, n));
    b->second_sent = true;
}

static void bad_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    bad *b = user;
    (void)listener;
    uint16_t port = peer_port(loop, conn);
    for (int i = 0; i < BAD_PEERS; i++)
        if (b->raw_port[i] == port)
            b->conn[i] = conn;
}

static void bad_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    bad *b = user;
    CHECK_EQ(b->t, bad_peer_of(b, conn), BAD_GOOD);
    b->good_frames++;
    CHECK_EQ(b->t, f->id, b->good_frames);
    CHECK_EQ(b->t,
             ef_loop_send(loop, conn, f->type, 0, 0, 0, f->id, f->payload.ptr, f->payload.len),
             EF_OK);
    if (b->good_frames == 2)
        shutdown(b->raw[BAD_GOOD], SHUT_WR); /* then the loop sees EOF */
    bad_maybe_continue(b);
}

static void bad_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    bad *b = user;
    int i = bad_peer_of(b, conn);
    CHECK(b->t, i >= 0);
    if (i < 0)
        return;
    b->closes[i]++;
    b->reason[i] = reason;
    if (i == BAD_GOOD) {
        ef_loop_stop(loop);
        return;
    }
    b->bad_closed++;
    bad_maybe_continue(b);
}

static void bad_timer(ef_loop *loop, void *user, uint64_t timer) {
    bad *b = user;
    if (timer == b->deadline) {
        b->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_bad_frames(ef_t *t) {
    bad b = {.t = t};
    ef_loop_config cfg = {0};
    cfg.user = &b;
    cfg.on_accept = bad_accept;
    cfg.on_frame = bad_frame;
    cfg.on_close = bad_close;
    cfg.on_timer = bad_timer;
    cfg.max_payload = 1024;
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);

    uint8_t payload[2048], frame[4096];
    fill(payload, sizeof payload, 99);
    bool ok = true;
    for (int i = 0; i < BAD_PEERS; i++) {
        b.raw[i] = raw_connect(port, 0);
        ok = ok && b.raw[i] >= 0;
        if (b.raw[i] >= 0)
            b.raw_port[i] = local_port(b.raw[i]);
        size_t n = 0;
        switch (i) {
        case BAD_GOOD:
            n = encode(frame, EF_FRAME_PARCEL, 1, bad_hello, sizeof bad_hello - 1);
            break;
        case BAD_GARBAGE:
            n = 26;
            memcpy(frame, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", n);
            break;
        case BAD_CHECKSUM:
            n = encode(frame, EF_FRAME_PARCEL, 3, payload, 100);
            frame[EF_FRAME_HEADER_SIZE + 50] ^= 0x10;
            break;
        case BAD_HDRCHECKSUM:
            n = encode(frame, EF_FRAME_PARCEL, 4, payload, 100);
            frame[12] ^= 0x01; /* aux */
            break;
        case BAD_TOOLONG:
            encode(frame, EF_FRAME_PARCEL, 5, payload, 2048);
            n = EF_FRAME_HEADER_SIZE; /* refused on the header alone */
            break;
        case BAD_VERSION:
            n = encode(frame, EF_FRAME_PARCEL, 6, payload, 10);
            frame[4] = 9;
            break;
        case BAD_TYPE: {
            n = encode(frame, EF_FRAME_PARCEL, 7, payload, 10);
            frame[5] = 99;
            uint32_t crc = ef_crc32c(0, frame, 28); /* a well-formed header of an unknown type */
            memcpy(frame + 28, &crc, 4);
            break;
        }
        case BAD_TRUNCATED:
            encode(frame, EF_FRAME_PARCEL, 8, payload, 100);
            n = 60;
            break;
        default: break;
        }
        if (b.raw[i] >= 0)
            ok = write_all(b.raw[i], frame, n) && ok;
        if (i == BAD_TRUNCATED && b.raw[i] >= 0)
            shutdown(b.raw[i], SHUT_WR);
    }
    CHECK(t, ok);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &b.deadline), EF_OK);
    if (ok)
        CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, b.timeout, 0);

    static const int want[BAD_PEERS] = {
        [BAD_GOOD] = EF_OK,
        [BAD_GARBAGE] = EF_EBADMAGIC,
        [BAD_CHECKSUM] = EF_ECHECKSUM,
        [BAD_HDRCHECKSUM] = EF_EHDRCHECKSUM,
        [BAD_TOOLONG] = EF_ETOOLONG,
        [BAD_VERSION] = EF_EVERSION,
        [BAD_TYPE] = EF_EFRAMETYPE,
        [BAD_TRUNCATED] = EF_ECLOSED,
    };
    for (int i = 0; i < BAD_PEERS; i++) {
        CHECK_EQ(t, b.closes[i], 1);
        CHECK_EQ(t, b.reason[i], want[i]);
    }
    CHECK_EQ(t, b.good_frames, 2);

    /* The good peer got both frames back, then an orderly end. */
    uint8_t back[256];
    size_t got = 0;
    for (;;) {
        ssize_t r =
            b.raw[BAD_GOOD] >= 0 ? recv(b.raw[BAD_GOOD], back + got, sizeof back - got, 0) : 0;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    ef_frame f1, f2;
    ptrdiff_t n1 = ef_frame_parse(back, got, 1024, &f1);
    CHECK(t, n1 > 0);
    if (n1 > 0) {
        CHECK_EQ(t, f1.id, 1);
        CHECK(t, f1.payload.len == 5 && memcmp(f1.payload.ptr, "hello", 5) == 0);
        ptrdiff_t n2 = ef_frame_parse(back + n1, got - (size_t)n1, 1024, &f2);
        CHECK_EQ(t, n2, (ptrdiff_t)(got - (size_t)n1));
        if (n2 > 0)
            CHECK(t, f2.id == 2 && f2.payload.len == 10 &&
                         memcmp(f2.payload.ptr, "still here", 10) == 0);
    }
    for (int i = 0; i < BAD_PEERS; i++)
        if (b.raw[i] >= 0)
            close(b.raw[i]);
    ef_loop_free(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* Back-pressure: EF_EBUSY over the high water, on_drain once the peer reads                  */
/* ------------------------------------------------------------------------------------------ */

#define BP_FRAME (32u * 1024u)
#define BP_HIGH (256u * 1024u)
#define BP_LOW (64u * 1024u)

typedef struct bp {
    ef_t *t;
    int raw;
    uint64_t conn, deadline;
    uint32_t sent;
    int busy, drains, closes, reason, timeout, released;
    bool eof;
    uint8_t *got;
    size_t got_len, got_cap;
    uint8_t frame[BP_FRAME];
} bp;

static void bp_release(void *ctx) { ((bp *)ctx)->released++; }

static void bp_read_some(ef_loop *loop, void *arg) {
    bp *b = arg;
    for (;;) {
        if (b->got_cap - b->got_len < 65536) {
            size_t cap = b->got_cap ? b->got_cap * 2 : (1u << 20);
            uint8_t *p = realloc(b->got, cap);
            CHECK(b->t, p != NULL);
            if (!p)
                return;
            b->got = p;
            b->got_cap = cap;
        }
        ssize_t r = recv(b->raw, b->got + b->got_len, 65536, MSG_DONTWAIT);
        if (r > 0) {
            b->got_len += (size_t)r;
            continue;
        }
        if (r == 0)
            b->eof = true;
        break;
    }
    /* The peer keeps reading, one batch per turn of the loop, until the connection ends. */
    if (!b->eof)
        ef_loop_post(loop, bp_read_some, b);
    else if (b->closes)
        ef_loop_stop(loop);
}

static void bp_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    bp *b = user;
    (void)listener;
    b->conn = conn;
    for (;;) {
        fill(b->frame, BP_FRAME, b->sent);
        int rc = ef_loop_send(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, b->sent, b->frame, BP_FRAME);
        if (rc == EF_EBUSY)
            break;
        CHECK_EQ(b->t, rc, EF_OK);
        if (rc != EF_OK)
            return;
        b->sent++;
    }
    b->busy++;
    CHECK(b->t, ef_loop_pending(loop, conn) >= (int64_t)BP_HIGH);
    /* Bytes were delivered (into the peer's buffer): the kernel has a rate for them. */
    uint64_t rate = 0;
    int limited = -1;
    CHECK_EQ(b->t, ef_loop_delivery_rate(loop, conn, &rate, &limited), EF_OK);
    CHECK(b->t, rate > 0 && (limited == 0 || limited == 1));
    CHECK_EQ(b->t, ef_loop_delivery_rate(loop, conn, NULL, &limited), EF_EINVAL);
    /* Still busy, for either kind of send; a refused zero-copy frame stays the caller's. */
    CHECK_EQ(b->t, ef_loop_send(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, 0, NULL, 0), EF_EBUSY);
    CHECK_EQ(b->t,
             ef_loop_send_ref(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, 0, b->frame, 10, bp_release, b),
             EF_EBUSY);
    CHECK_EQ(b->t, b->drains, 0);
    CHECK_EQ(b->t, ef_loop_post(loop, bp_read_some, b), EF_OK);
}

static void bp_drain(ef_loop *loop, void *user, uint64_t conn) {
    bp *b = user;
    b->drains++;
    CHECK_EQ(b->t, b->busy, 1);
    int64_t pending = ef_loop_pending(loop, conn);
    CHECK(b->t, pending >= 0 && pending < (int64_t)BP_LOW);
    /* One more frame, then an orderly close that waits for the queue. */
    fill(b->frame, BP_FRAME, b->sent);
    CHECK_EQ(b->t, ef_loop_send(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, b->sent, b->frame, BP_FRAME),
             EF_OK);
    b->sent++;
    CHECK_EQ(b->t, ef_loop_close(loop, conn, 1), EF_OK);
    CHECK_EQ(b->t, ef_loop_send(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, 0, NULL, 0), EF_ECLOSED);
}

static void bp_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    bp *b = user;
    (void)conn;
    b->closes++;
    b->reason = reason;
    if (b->eof)
        ef_loop_stop(loop);
}

static void bp_timer(ef_loop *loop, void *user, uint64_t timer) {
    bp *b = user;
    if (timer == b->deadline) {
        b->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_backpressure(ef_t *t) {
    bp *b = calloc(1, sizeof *b);
    CHECK(t, b != NULL);
    if (!b)
        return;
    b->t = t;
    ef_loop_config cfg = {0};
    cfg.user = b;
    cfg.on_accept = bp_accept;
    cfg.on_drain = bp_drain;
    cfg.on_close = bp_close;
    cfg.on_timer = bp_timer;
    cfg.send_high_water = BP_HIGH;
    cfg.send_low_water = BP_LOW;
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    uint64_t lid;
    uint16_t port = 0;
    if (loop)
        CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    b->raw = loop ? raw_connect(port, 4096) : -1;
    CHECK(t, b->raw >= 0);
    if (b->raw >= 0) {
        CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &b->deadline), EF_OK);
        CHECK_EQ(t, ef_loop_run(loop), EF_OK);
        close(b->raw);
    }
    CHECK_EQ(t, b->timeout, 0);
    CHECK_EQ(t, b->busy, 1);
    CHECK_EQ(t, b->drains, 1);
    CHECK_EQ(t, b->released, 0);
    CHECK_EQ(t, b->closes, 1);
    CHECK_EQ(t, b->reason, EF_OK);
    CHECK(t, b->eof);
    CHECK(t, b->sent * (size_t)BP_FRAME > BP_HIGH);

    /* Every frame arrived whole and in order, the last one after the drain included. */
    size_t off = 0;
    uint32_t frames = 0;
    int bad_frames = 0;
    while (off < b->got_len) {
        ef_frame f;
        ptrdiff_t n = ef_frame_parse(b->got + off, b->got_len - off, BP_FRAME, &f);
        if (n <= 0) {
            bad_frames++;
            break;
        }
        if (f.id != frames || f.payload.len != BP_FRAME ||
            !filled(f.payload.ptr, f.payload.len, frames))
            bad_frames++;
        frames++;
        off += (size_t)n;
    }
    CHECK_EQ(t, bad_frames, 0);
    CHECK_EQ(t, frames, b->sent);
    ef_loop_free(loop);
    free(b->got);
    free(b);
}

/* ------------------------------------------------------------------------------------------ */
/* Pause and resume                                                                           */
/* ------------------------------------------------------------------------------------------ */

#define PAUSE_FRAMES 10

typedef struct pz {
    ef_t *t;
    uint64_t cli, srv, deadline;
    int frames, turns, closes, timeout, srv_reason;
    bool resumed;
} pz;

static void pz_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    pz *p = user;
    CHECK_EQ(p->t, status, EF_OK);
    for (int i = 0; i < PAUSE_FRAMES; i++) {
        uint8_t payload[100];
        fill(payload, sizeof payload, (uint64_t)i);
        CHECK_EQ(p->t,
                 ef_loop_send(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, (uint64_t)i, payload,
                              sizeof payload),
                 EF_OK);
    }
    CHECK_EQ(p->t, ef_loop_close(loop, conn, 1), EF_OK); /* the peer sees EOF while paused */
}

static void pz_wait(ef_loop *loop, void *arg) {
    pz *p = arg;
    /* Several turns of the loop go by with input buffered and EOF pending: nothing may arrive. */
    CHECK_EQ(p->t, p->frames, 1);
    if (++p->turns < 20) {
        ef_loop_post(loop, pz_wait, p);
        return;
    }
    p->resumed = true;
    CHECK_EQ(p->t, ef_loop_pause(loop, p->srv, 0), EF_OK);
    CHECK_EQ(p->t, p->frames, 1); /* delivered from the loop, not from inside the call */
}

static void pz_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    (void)loop;
    (void)listener;
    ((pz *)user)->srv = conn;
}

static void pz_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    pz *p = user;
    CHECK_EQ(p->t, conn, p->srv);
    CHECK_EQ(p->t, f->id, p->frames);
    CHECK(p->t, filled(f->payload.ptr, f->payload.len, f->id));
    if (p->frames++ == 0) {
        CHECK_EQ(p->t, ef_loop_pause(loop, conn, 1), EF_OK);
        CHECK_EQ(p->t, ef_loop_post(loop, pz_wait, p), EF_OK);
    } else {
        CHECK(p->t, p->resumed);
    }
}

static void pz_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    pz *p = user;
    p->closes++;
    if (conn == p->srv) {
        p->srv_reason = reason;
        CHECK_EQ(p->t, p->frames, PAUSE_FRAMES);
    }
    if (p->closes == 2)
        ef_loop_stop(loop);
}

static void pz_timer(ef_loop *loop, void *user, uint64_t timer) {
    pz *p = user;
    if (timer == p->deadline) {
        p->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_pause_resume(ef_t *t) {
    pz p = {.t = t};
    ef_loop_config cfg = {0};
    cfg.user = &p;
    cfg.on_connect = pz_connect;
    cfg.on_accept = pz_accept;
    cfg.on_frame = pz_frame;
    cfg.on_close = pz_close;
    cfg.on_timer = pz_timer;
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &p.cli), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &p.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, p.timeout, 0);
    CHECK_EQ(t, p.frames, PAUSE_FRAMES);
    CHECK_EQ(t, p.closes, 2);
    CHECK_EQ(t, p.srv_reason, EF_OK);
    ef_loop_free(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* Zero-copy: release exactly once, delivered or not                                          */
/* ------------------------------------------------------------------------------------------ */

#define ZC_FRAMES 64
#define ZC_SIZE (100u * 1024u)

enum { ZC_DELIVER, ZC_USER_CLOSE, ZC_PEER_DIES, ZC_LOOP_FREED };

typedef struct zc zc;
typedef struct zc_ref {
    zc *z;
    int released;
} zc_ref;

struct zc {
    ef_t *t;
    int mode, raw;
    uint64_t cli, srv, sender, deadline;
    uint8_t *bufs[ZC_FRAMES];
    zc_ref refs[ZC_FRAMES];
    int frames, closes, sender_reason, timeout, sync_released;
    bool release_ok_at_close;
};

static void zc_release(void *ctx) { ((zc_ref *)ctx)->released++; }

static int zc_released(const zc *z, int *twice) {
    int n = 0;
    *twice = 0;
    for (int i = 0; i < ZC_FRAMES; i++) {
        n += z->refs[i].released == 1;
        *twice += z->refs[i].released > 1;
    }
    return n;
}

static void zc_send_all(ef_loop *loop, zc *z, uint64_t conn) {
    z->sender = conn;
    for (int i = 0; i < ZC_FRAMES; i++) {
        CHECK_EQ(z->t,
                 ef_loop_send_ref(loop, conn, EF_FRAME_PARCEL, 0, 0, (uint32_t)i, (uint64_t)i,
                                  z->bufs[i], ZC_SIZE, zc_release, &z->refs[i]),
                 EF_OK);
    }
    int twice;
    z->sync_released = zc_released(z, &twice);
    CHECK_EQ(z->t, twice, 0);
}

static void zc_act(ef_loop *loop, void *arg) {
    zc *z = arg;
    if (z->mode == ZC_USER_CLOSE)
        CHECK_EQ(z->t, ef_loop_close(loop, z->sender, 0), EF_OK);
    else if (z->mode == ZC_PEER_DIES) {
        close(z->raw); /* unread input: the kernel answers with a reset */
        z->raw = -1;
    } else if (z->mode == ZC_LOOP_FREED)
        ef_loop_stop(loop);
}

static void zc_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    zc *z = user;
    CHECK_EQ(z->t, status, EF_OK);
    zc_send_all(loop, z, conn);
}

static void zc_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    zc *z = user;
    (void)listener;
    z->srv = conn;
    if (z->mode != ZC_DELIVER) {
        zc_send_all(loop, z, conn);
        /* The raw peer never reads: most of the refs are still queued now. */
        CHECK(z->t, z->sync_released < ZC_FRAMES);
        CHECK_EQ(z->t, ef_loop_post(loop, zc_act, z), EF_OK);
    }
}

static void zc_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    zc *z = user;
    CHECK_EQ(z->t, f->id, z->frames);
    CHECK(z->t, f->id < ZC_FRAMES && f->payload.len == ZC_SIZE &&
                    memcmp(f->payload.ptr, z->bufs[f->id], ZC_SIZE) == 0);
    if (++z->frames == ZC_FRAMES) {
        /* Everything written, so everything released, each once. */
        int twice;
        CHECK_EQ(z->t, zc_released(z, &twice), ZC_FRAMES);
        CHECK_EQ(z->t, twice, 0);
        CHECK_EQ(z->t, ef_loop_close(loop, conn, 0), EF_OK);
    }
}

static void zc_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    zc *z = user;
    z->closes++;
    if (conn == z->sender) {
        z->sender_reason = reason;
        int twice;
        z->release_ok_at_close = zc_released(z, &twice) == ZC_FRAMES && twice == 0;
    }
    if (z->mode != ZC_DELIVER || z->closes == 2)
        ef_loop_stop(loop);
}

static void zc_timer(ef_loop *loop, void *user, uint64_t timer) {
    zc *z = user;
    if (timer == z->deadline) {
        z->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void zc_run(ef_t *t, int mode) {
    zc *z = calloc(1, sizeof *z);
    CHECK(t, z != NULL);
    if (!z)
        return;
    z->t = t;
    z->mode = mode;
    z->raw = -1;
    for (int i = 0; i < ZC_FRAMES; i++) {
        z->bufs[i] = malloc(ZC_SIZE);
        CHECK(t, z->bufs[i] != NULL);
        if (!z->bufs[i])
            goto out;
        fill(z->bufs[i], ZC_SIZE, 1000u + (unsigned)i);
        z->refs[i].z = z;
    }
    ef_loop_config cfg = {0};
    cfg.user = z;
    cfg.on_connect = zc_connect;
    cfg.on_accept = zc_accept;
    cfg.on_frame = zc_frame;
    cfg.on_close = zc_close;
    cfg.on_timer = zc_timer;
    cfg.send_high_water = 64u << 20; /* every ref is queued: none refused */
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        goto out;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    if (mode == ZC_DELIVER) {
        CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &z->cli), EF_OK);
    } else {
        z->raw = raw_connect(port, 4096);
        CHECK(t, z->raw >= 0);
    }
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &z->deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, z->timeout, 0);

    int twice;
    switch (mode) {
    case ZC_DELIVER:
        CHECK_EQ(t, z->frames, ZC_FRAMES);
        CHECK_EQ(t, z->closes, 2);
        CHECK_EQ(t, z->sender_reason, EF_OK);
        break;
    case ZC_USER_CLOSE:
        CHECK_EQ(t, z->closes, 1);
        CHECK_EQ(t, z->sender_reason, EF_OK);
        CHECK(t, z->release_ok_at_close); /* released before on_close */
        break;
    case ZC_PEER_DIES:
        CHECK_EQ(t, z->closes, 1);
        CHECK_EQ(t, z->sender_reason, EF_ESYS);
        CHECK(t, ef_loop_last_errno(loop) == ECONNRESET || ef_loop_last_errno(loop) == EPIPE);
        CHECK(t, z->release_ok_at_close);
        break;
    case ZC_LOOP_FREED:
        CHECK_EQ(t, z->closes, 0);
        CHECK(t, zc_released(z, &twice) < ZC_FRAMES); /* still queued when the loop stopped */
        break;
    default: break;
    }
    ef_loop_free(loop);
    CHECK_EQ(t, zc_released(z, &twice), ZC_FRAMES);
    CHECK_EQ(t, twice, 0);
out:
    if (z->raw >= 0)
        close(z->raw);
    for (int i = 0; i < ZC_FRAMES; i++)
        free(z->bufs[i]);
    free(z);
}

static void test_loop_zero_copy_delivered(ef_t *t) { zc_run(t, ZC_DELIVER); }
static void test_loop_zero_copy_user_close(ef_t *t) { zc_run(t, ZC_USER_CLOSE); }
static void test_loop_zero_copy_peer_dies(ef_t *t) { zc_run(t, ZC_PEER_DIES); }
static void test_loop_zero_copy_loop_freed(ef_t *t) { zc_run(t, ZC_LOOP_FREED); }

/* ------------------------------------------------------------------------------------------ */
/* Timers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct tmr {
    ef_t *t;
    uint64_t repeat, once, cancelled, deadline, immediate;
    int repeat_fires, once_fires, cancelled_fires, immediate_fires, timeout;
} tmr;

static void tm_timer(ef_loop *loop, void *user, uint64_t timer) {
    tmr *m = user;
    if (timer == m->deadline) {
        m->timeout = 1;
        ef_loop_stop(loop);
        return;
    }
    if (timer == m->repeat && ++m->repeat_fires == 5)
        CHECK_EQ(m->t, ef_loop_timer_cancel(loop, timer), EF_OK); /* from its own callback */
    if (timer == m->once) {
        m->once_fires++;
        CHECK_EQ(m->t, ef_loop_timer_cancel(loop, timer), EF_ECLOSED); /* a one-shot is gone */
    }
    if (timer == m->cancelled)
        m->cancelled_fires++;
    if (timer == m->immediate)
        m->immediate_fires++;
    /* Done once the repeating timer has stopped and the one-shot has fired. The cancelled
     * timer was due (1 ms) long before: had cancel failed, it would have fired by now. */
    if (m->repeat_fires >= 5 && m->once_fires == 1)
        ef_loop_stop(loop);
}

static void test_loop_timers(ef_t *t) {
    tmr m = {.t = t};
    ef_loop_config cfg = {0};
    cfg.user = &m;
    cfg.on_timer = tm_timer;
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    CHECK_EQ(t, ef_loop_timer_add(loop, 2, 1, &m.repeat), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 30, 0, &m.once), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 1, 0, &m.cancelled), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 0, 0, &m.immediate), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &m.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_timer_cancel(loop, m.cancelled), EF_OK);
    CHECK_EQ(t, ef_loop_timer_cancel(loop, m.cancelled), EF_ECLOSED);
    uint64_t zero_repeat;
    CHECK_EQ(t, ef_loop_timer_add(loop, 0, 1, &zero_repeat), EF_EINVAL);
    /* The slot of the cancelled timer is reused, never its id. */
    uint64_t reuse;
    CHECK_EQ(t, ef_loop_timer_add(loop, 100000, 0, &reuse), EF_OK);
    CHECK(t, reuse != m.cancelled && reuse != m.repeat && reuse != m.once);
    CHECK_EQ(t, ef_loop_timer_cancel(loop, m.cancelled), EF_ECLOSED);

    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, m.timeout, 0);
    CHECK_EQ(t, m.repeat_fires, 5);
    CHECK_EQ(t, m.once_fires, 1);
    CHECK_EQ(t, m.cancelled_fires, 0);
    CHECK_EQ(t, m.immediate_fires, 1);
    CHECK_EQ(t, ef_loop_timer_cancel(loop, m.repeat), EF_ECLOSED);
    CHECK_EQ(t, ef_loop_timer_cancel(loop, reuse), EF_OK);
    ef_loop_free(loop); /* frees the deadline timer still armed */
}

/* ------------------------------------------------------------------------------------------ */
/* Posts from 4 threads                                                                       */
/* ------------------------------------------------------------------------------------------ */

#define POST_THREADS 4
#define POST_EACH 10000

typedef struct posts posts;
typedef struct post_rec {
    posts *p;
    uint32_t thread, seq;
} post_rec;

struct posts {
    ef_loop *loop;
    post_rec recs[POST_THREADS][POST_EACH];
    uint8_t seen[POST_THREADS][POST_EACH];
    int64_t last[POST_THREADS];
    int total, out_of_order, post_errors[POST_THREADS], timeout;
    uint64_t deadline;
    atomic_int started;
};

static void post_fn(ef_loop *loop, void *arg) {
    post_rec *r = arg;
    posts *p = r->p;
    p->seen[r->thread][r->seq]++;
    if ((int64_t)r->seq <= p->last[r->thread])
        p->out_of_order++;
    p->last[r->thread] = r->seq;
    if (++p->total == POST_THREADS * POST_EACH)
        ef_loop_stop(loop);
}

typedef struct post_thread_arg {
    posts *p;
    uint32_t thread;
} post_thread_arg;

static void *post_thread(void *arg) {
    post_thread_arg *a = arg;
    atomic_fetch_add(&a->p->started, 1);
    for (uint32_t i = 0; i < POST_EACH; i++)
        if (ef_loop_post(a->p->loop, post_fn, &a->p->recs[a->thread][i]) != EF_OK)
            a->p->post_errors[a->thread]++;
    return NULL;
}

static void post_timer(ef_loop *loop, void *user, uint64_t timer) {
    posts *p = user;
    if (timer == p->deadline) {
        p->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_post_threads(ef_t *t) {
    posts *p = calloc(1, sizeof *p);
    CHECK(t, p != NULL);
    if (!p)
        return;
    ef_loop_config cfg = {0};
    cfg.user = p;
    cfg.on_timer = post_timer;
    p->loop = ef_loop_create(&cfg, NULL);
    CHECK(t, p->loop != NULL);
    if (!p->loop) {
        free(p);
        return;
    }
    for (uint32_t th = 0; th < POST_THREADS; th++) {
        p->last[th] = -1;
        for (uint32_t i = 0; i < POST_EACH; i++)
            p->recs[th][i] = (post_rec){p, th, i};
    }
    CHECK_EQ(t, ef_loop_post(p->loop, NULL, NULL), EF_EINVAL);
    CHECK_EQ(t, ef_loop_timer_add(p->loop, 10000, 0, &p->deadline), EF_OK);
    pthread_t th[POST_THREADS];
    post_thread_arg args[POST_THREADS];
    for (uint32_t i = 0; i < POST_THREADS; i++) {
        args[i] = (post_thread_arg){p, i};
        CHECK_EQ(t, pthread_create(&th[i], NULL, post_thread, &args[i]), 0);
    }
    CHECK_EQ(t, ef_loop_run(p->loop), EF_OK);
    for (int i = 0; i < POST_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(t, p->timeout, 0);
    CHECK_EQ(t, p->total, POST_THREADS * POST_EACH);
    CHECK_EQ(t, p->out_of_order, 0);
    int wrong = 0;
    for (int i = 0; i < POST_THREADS; i++) {
        CHECK_EQ(t, p->post_errors[i], 0);
        for (int j = 0; j < POST_EACH; j++)
            wrong += p->seen[i][j] != 1;
    }
    CHECK_EQ(t, wrong, 0);
    ef_loop_free(p->loop);
    free(p);
}

/* A post still queued when the loop is freed runs then, exactly once. */
static void post_count(ef_loop *loop, void *arg) {
    (void)loop;
    ++*(int *)arg;
}

static void test_loop_post_survives_free(ef_t *t) {
    ef_loop *loop = ef_loop_create(NULL, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    int n = 0;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(t, ef_loop_post(loop, post_count, &n), EF_OK);
    ef_loop_free(loop);
    CHECK_EQ(t, n, 3);
}

/* ------------------------------------------------------------------------------------------ */
/* Connect failure, stop from another thread, ids and small API contracts                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct cf {
    ef_t *t;
    uint64_t conn, deadline;
    int connects, closes, status, reason, connect_errno, close_errno, timeout;
} cf;

static void cf_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    cf *c = user;
    CHECK_EQ(c->t, conn, c->conn);
    CHECK_EQ(c->t, c->closes, 0); /* on_connect comes first */
    c->connects++;
    c->status = status;
    c->connect_errno = ef_loop_last_errno(loop);
}

static void cf_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    cf *c = user;
    CHECK_EQ(c->t, conn, c->conn);
    c->closes++;
    c->reason = reason;
    c->close_errno = ef_loop_last_errno(loop);
    ef_loop_stop(loop);
}

static void cf_timer(ef_loop *loop, void *user, uint64_t timer) {
    cf *c = user;
    if (timer == c->deadline) {
        c->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_connect_refused(ef_t *t) {
    /* A port that was just free: bind it, learn it, close it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(t, s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
    uint16_t port = local_port(s);
    close(s);
    CHECK(t, port != 0);

    cf c = {.t = t};
    ef_loop_config cfg = {0};
    cfg.user = &c;
    cfg.on_connect = cf_connect;
    cfg.on_close = cf_close;
    cfg.on_timer = cf_timer;
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &c.conn), EF_OK);
    /* Queued before the failure is known, dropped with the connection. */
    CHECK_EQ(t, ef_loop_send(loop, c.conn, EF_FRAME_HELLO, 0, 0, 0, 0, (const uint8_t *)"x", 1),
             EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &c.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, c.timeout, 0);
    CHECK_EQ(t, c.connects, 1);
    CHECK_EQ(t, c.status, EF_ESYS);
    CHECK_EQ(t, c.connect_errno, ECONNREFUSED);
    CHECK_EQ(t, c.closes, 1);
    CHECK_EQ(t, c.reason, EF_ESYS);
    CHECK_EQ(t, c.close_errno, ECONNREFUSED);
    CHECK_EQ(t, ef_loop_send(loop, c.conn, EF_FRAME_HELLO, 0, 0, 0, 0, NULL, 0), EF_ECLOSED);

    uint64_t id;
    CHECK_EQ(t, ef_loop_connect(loop, "", port, &id), EF_EINVAL);
    CHECK_EQ(t, ef_loop_connect(loop, NULL, port, &id), EF_EINVAL);
    ef_loop_free(loop);
}

typedef struct stopper {
    atomic_int entered;
} stopper;

static void stop_mark(ef_loop *loop, void *arg) {
    (void)loop;
    atomic_store(&((stopper *)arg)->entered, 1);
}

static void test_loop_stop_from_thread(ef_t *t) {
    ef_loop *loop = ef_loop_create(NULL, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    /* A stop that comes before run makes that run return at once. */
    ef_loop_stop(loop);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);

    for (int round = 0; round < 3; round++) {
        stopper s;
        atomic_init(&s.entered, 0);
        CHECK_EQ(t, ef_loop_post(loop, stop_mark, &s), EF_OK);
        runner r = {loop, -1};
        pthread_t th;
        CHECK_EQ(t, pthread_create(&th, NULL, run_thread, &r), 0);
        /* Wait until the loop has run our post: it then sits in epoll_wait with nothing to do. */
        while (!atomic_load(&s.entered))
            sched_yield();
        ef_loop_stop(loop);
        pthread_join(th, NULL);
        CHECK_EQ(t, r.rc, EF_OK);
    }
    ef_loop_free(loop);
}

static void nested_run(ef_loop *loop, void *arg) {
    *(int *)arg = ef_loop_run(loop);
    ef_loop_stop(loop);
}

typedef struct misc {
    ef_t *t;
    uint64_t cli, srv, lid;
    uint16_t port;
    int accepts, connects, frames, closes, timeout;
    uint64_t seen_ids[8], deadline;
    int nseen;
} misc;

static void misc_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    misc *m = user;
    CHECK_EQ(m->t, listener, m->lid);
    m->srv = conn;
    m->accepts++;
    char text[64];
    ptrdiff_t n = ef_loop_peer(loop, conn, text, sizeof text);
    CHECK(m->t, n > 10 && strncmp(text, "127.0.0.1:", 10) == 0 && (size_t)n == strlen(text));
    CHECK_EQ(m->t, ef_loop_peer(loop, conn, text, 5), EF_ESPACE);
    /* The connecting side knows whom it called. */
    n = ef_loop_peer(loop, m->cli, text, sizeof text);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)m->port);
    CHECK(m->t, n > 0 && strcmp(text, want) == 0);
    CHECK_EQ(m->t, ef_loop_unlisten(loop, listener), EF_OK);
    CHECK_EQ(m->t, ef_loop_unlisten(loop, listener), EF_ECLOSED);
}

static void misc_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    misc *m = user;
    (void)loop;
    CHECK_EQ(m->t, conn, m->cli);
    CHECK_EQ(m->t, status, EF_OK);
    m->connects++;
}

static void misc_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    misc *m = user;
    CHECK_EQ(m->t, conn, m->srv);
    CHECK_EQ(m->t, f->id, (uint64_t)m->frames);
    m->frames++;
    if (m->frames == 3) {
        /* A flushing close of the receiving side with nothing queued: immediate on_close. */
        CHECK_EQ(m->t, ef_loop_close(loop, conn, 1), EF_OK);
        CHECK_EQ(m->t, ef_loop_close(loop, conn, 1), EF_ECLOSED);
        CHECK_EQ(m->t, ef_loop_pause(loop, conn, 1), EF_ECLOSED);
        CHECK_EQ(m->t, ef_loop_pending(loop, conn), EF_ECLOSED);
        /* The payload view is still intact after the close (the close read into a sink). */
        CHECK(m->t, f->payload.len == 3 && memcmp(f->payload.ptr, "abc", 3) == 0);
    }
}

static void misc_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    misc *m = user;
    CHECK_EQ(m->t, reason, EF_OK);
    CHECK(m->t, m->nseen < 8);
    if (m->nseen < 8)
        m->seen_ids[m->nseen++] = conn;
    if (++m->closes == 2)
        ef_loop_stop(loop);
}

static void misc_timer(ef_loop *loop, void *user, uint64_t timer) {
    misc *m = user;
    if (timer == m->deadline) {
        m->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_api_contracts(ef_t *t) {
    int err = 0;
    ef_loop_config bad_cfg = {0};
    bad_cfg.send_high_water = 100;
    bad_cfg.send_low_water = 200;
    CHECK(t, ef_loop_create(&bad_cfg, &err) == NULL);
    CHECK_EQ(t, err, EF_EINVAL);
    ef_loop_free(NULL);

    misc m = {.t = t};
    ef_loop_config cfg = {0};
    cfg.user = &m;
    cfg.on_accept = misc_accept;
    cfg.on_connect = misc_connect;
    cfg.on_frame = misc_frame;
    cfg.on_close = misc_close;
    cfg.on_timer = misc_timer;
    ef_loop *loop = ef_loop_create(&cfg, &err);
    CHECK(t, loop != NULL);
    CHECK_EQ(t, err, EF_OK);
    if (!loop)
        return;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &m.lid, &m.port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", m.port, &m.cli), EF_OK);
    CHECK(t, m.cli != m.lid && m.cli != 0 && m.lid != 0);
    /* Sent before the connection is up: queued, then written in order. */
    for (uint64_t i = 0; i < 3; i++)
        CHECK_EQ(
            t, ef_loop_send(loop, m.cli, EF_FRAME_HEARTBEAT, 0, 0, 0, i, (const uint8_t *)"abc", 3),
            EF_OK);
    CHECK_EQ(t, ef_loop_pending(loop, m.cli), 3 * (EF_FRAME_HEADER_SIZE + 3));
    CHECK_EQ(t, ef_loop_send(loop, m.cli, 0, 0, 0, 0, 0, NULL, 0), EF_EINVAL); /* type 0 */
    CHECK_EQ(t, ef_loop_send(loop, m.cli, EF_FRAME_BYE, 0, 0, 0, 0, NULL, 5), EF_EINVAL);
    /* Stale and made-up ids are harmless. */
    uint64_t ghost = m.cli + (UINT64_C(1) << 30);
    CHECK_EQ(t, ef_loop_send(loop, ghost, EF_FRAME_BYE, 0, 0, 0, 0, NULL, 0), EF_ECLOSED);
    CHECK_EQ(t, ef_loop_close(loop, ghost, 0), EF_ECLOSED);
    CHECK_EQ(t, ef_loop_pending(loop, ghost), EF_ECLOSED);
    uint64_t ghost_rate = 0;
    int ghost_limited = 0;
    CHECK_EQ(t, ef_loop_delivery_rate(loop, ghost, &ghost_rate, &ghost_limited), EF_ECLOSED);
    CHECK_EQ(t, ef_loop_close(loop, m.lid, 0), EF_ECLOSED); /* a listener is not a connection */
    CHECK_EQ(t, ef_loop_timer_cancel(loop, m.cli), EF_ECLOSED);
    char text[64];
    CHECK_EQ(t, ef_loop_peer(loop, ghost, text, sizeof text), EF_ECLOSED);

    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &m.deadline), EF_OK);
    int nested = 1;
    CHECK_EQ(t, ef_loop_post(loop, nested_run, &nested), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK); /* stopped by nested_run */
    CHECK_EQ(t, nested, EF_EINVAL);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK); /* runs on until both ends closed */
    CHECK_EQ(t, m.timeout, 0);
    CHECK_EQ(t, m.accepts, 1);
    CHECK_EQ(t, m.connects, 1);
    CHECK_EQ(t, m.frames, 3);
    CHECK_EQ(t, m.closes, 2);
    CHECK(t, m.nseen == 2 && m.seen_ids[0] != m.seen_ids[1]);
    CHECK_EQ(t, ef_loop_send(loop, m.cli, EF_FRAME_BYE, 0, 0, 0, 0, NULL, 0), EF_ECLOSED);
    ef_loop_free(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* Fault injection: a frame tampered with in flight is refused by the peer's checksum, and    */
/* frames sent inside a batch (a posted function) are written once the batch ends             */
/* ------------------------------------------------------------------------------------------ */

typedef struct tamper_state {
    uint64_t client, server, deadline;
    int server_reason, server_closes, frames, timeout;
} tamper_state;

static void tamper_on_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    (void)loop, (void)listener;
    ((tamper_state *)user)->server = conn;
}

static void tamper_on_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *frame) {
    (void)loop, (void)conn, (void)frame;
    ((tamper_state *)user)->frames++;
}

static void tamper_on_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    tamper_state *s = user;
    if (conn == s->server) {
        s->server_reason = reason;
        s->server_closes++;
        ef_loop_stop(loop);
    }
}

static void tamper_on_timer(ef_loop *loop, void *user, uint64_t timer) {
    tamper_state *s = user;
    if (timer == s->deadline) {
        s->timeout = 1;
        ef_loop_stop(loop);
    }
}

/* Posted: two good frames then a tampered one, all queued inside the batch. */
static void tamper_send(ef_loop *loop, void *arg) {
    tamper_state *s = arg;
    static const uint8_t good[] = "a good payload";
    uint8_t sent[sizeof good];
    memcpy(sent, good, sizeof good);
    sent[3] ^= 0x20; /* after the checksum is taken over `good` */
    ef_loop_send(loop, s->client, EF_FRAME_PARCEL, 0, 0, 0, 1, good, sizeof good);
    ef_loop_send(loop, s->client, EF_FRAME_PARCEL, 0, 0, 0, 2, good, sizeof good);
    ef_loop_send_tampered(loop, s->client, EF_FRAME_PARCEL, 0, 0, 0, 3, good, sent, sizeof good);
}

static void test_loop_tampered_frame_is_refused(ef_t *t) {
    tamper_state s = {0};
    ef_loop_config cfg = {.user = &s,
                          .on_accept = tamper_on_accept,
                          .on_frame = tamper_on_frame,
                          .on_close = tamper_on_close,
                          .on_timer = tamper_on_timer};
    int err = 0;
    ef_loop *loop = ef_loop_create(&cfg, &err);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    uint64_t listener;
    uint16_t port = 0;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &listener, &port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &s.client), EF_OK);
    CHECK_EQ(t, ef_loop_send_tampered(loop, s.client, EF_FRAME_PARCEL, 0, 0, 0, 9, NULL, NULL, 1),
             EF_EINVAL);
    CHECK_EQ(t, ef_loop_post(loop, tamper_send, &s), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &s.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, s.timeout, 0);
    CHECK_EQ(t, s.frames, 2); /* the two good frames arrived, then the tampered one was refused */
    CHECK_EQ(t, s.server_closes, 1);
    CHECK_EQ(t, s.server_reason, EF_ECHECKSUM);
    ef_loop_free(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* ef_loop_send_with: a known payload CRC is used as given — right, the frame arrives; wrong, */
/* the peer refuses it (EF_ECHECKSUM); zero copy by release                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct with_state {
    tamper_state base; /* its callbacks count frames and the server's close */
    int releases, rc[5];
    uint64_t ids[8];
    int nids;
    int payload_ok;
} with_state;

static const uint8_t with_payload[] = "a parcel whose CRC the master already knows";

static void with_on_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *frame) {
    with_state *w = user;
    tamper_on_frame(loop, user, conn, frame);
    if (w->nids < 8)
        w->ids[w->nids++] = frame->id;
    if (frame->payload.len == sizeof with_payload &&
        memcmp(frame->payload.ptr, with_payload, sizeof with_payload) == 0)
        w->payload_ok++;
}

static void with_release(void *ctx) { ((with_state *)ctx)->releases++; }

/* Posted: four good frames (known CRC copied, known CRC by reference, no CRC, empty payload
 * with its CRC, 0), then one whose known CRC is wrong. */
static void with_send(ef_loop *loop, void *arg) {
    with_state *w = arg;
    uint32_t crc = ef_crc32c(0, with_payload, sizeof with_payload);
    ef_send s = {.type = EF_FRAME_PARCEL,
                 .id = 1,
                 .payload = with_payload,
                 .len = sizeof with_payload,
                 .has_crc = 1,
                 .payload_crc = crc};
    w->rc[0] = ef_loop_send_with(loop, w->base.client, &s);
    s.id = 2;
    s.release = with_release;
    s.ctx = w;
    w->rc[1] = ef_loop_send_with(loop, w->base.client, &s);
    s = (ef_send){
        .type = EF_FRAME_RESULT, .id = 3, .payload = with_payload, .len = sizeof with_payload};
    w->rc[2] = ef_loop_send_with(loop, w->base.client, &s);
    s = (ef_send){.type = EF_FRAME_HEARTBEAT, .id = 4, .has_crc = 1, .payload_crc = 0};
    w->rc[3] = ef_loop_send_with(loop, w->base.client, &s);
    s = (ef_send){.type = EF_FRAME_PARCEL,
                  .id = 5,
                  .payload = with_payload,
                  .len = sizeof with_payload,
                  .has_crc = 1,
                  .payload_crc = crc ^ 1};
    w->rc[4] = ef_loop_send_with(loop, w->base.client, &s);
}

static void test_loop_send_with_known_crc(ef_t *t) {
    with_state w = {0};
    ef_loop_config cfg = {.user = &w,
                          .on_accept = tamper_on_accept,
                          .on_frame = with_on_frame,
                          .on_close = tamper_on_close,
                          .on_timer = tamper_on_timer};
    int err = 0;
    ef_loop *loop = ef_loop_create(&cfg, &err);
    CHECK(t, loop != NULL);
    if (!loop)
        return;
    uint64_t listener;
    uint16_t port = 0;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &listener, &port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &w.base.client), EF_OK);
    /* argument errors queue nothing and release nothing */
    ef_send wrong = {.type = 0, .release = with_release, .ctx = &w};
    CHECK_EQ(t, ef_loop_send_with(loop, w.base.client, NULL), EF_EINVAL);
    CHECK_EQ(t, ef_loop_send_with(loop, w.base.client, &wrong), EF_EINVAL);
    wrong = (ef_send){.type = EF_FRAME_PARCEL, .len = 3, .release = with_release, .ctx = &w};
    CHECK_EQ(t, ef_loop_send_with(loop, w.base.client, &wrong), EF_EINVAL);
    wrong = (ef_send){.type = EF_FRAME_PARCEL};
    CHECK_EQ(t, ef_loop_send_with(loop, w.base.client + (UINT64_C(1) << 30), &wrong), EF_ECLOSED);
    CHECK_EQ(t, w.releases, 0);
    CHECK_EQ(t, ef_loop_pending(loop, w.base.client), 0);
    CHECK_EQ(t, ef_loop_post(loop, with_send, &w), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &w.base.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, w.base.timeout, 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(t, w.rc[i], EF_OK);
    CHECK_EQ(t, w.base.frames,
             4); /* the four good frames arrived, then the wrong CRC was refused */
    CHECK_EQ(t, w.payload_ok, 3);
    CHECK(t, w.nids == 4 && w.ids[0] == 1 && w.ids[1] == 2 && w.ids[2] == 3 && w.ids[3] == 4);
    CHECK_EQ(t, w.base.server_closes, 1);
    CHECK_EQ(t, w.base.server_reason, EF_ECHECKSUM);
    ef_loop_free(loop);
    CHECK_EQ(t, w.releases, 1); /* exactly once, for the zero-copy frame */
}

/* ------------------------------------------------------------------------------------------ */
/* Payloads from a file (EF_SEND_FROM_FILE): sendfile, in order with the other runs, released */
/* exactly once; a file sendfile refuses is copied; a file that ends early closes             */
/* ------------------------------------------------------------------------------------------ */

/* An unlinked temporary file of size bytes of fill(seed); *data gets a copy. -1 on failure. */
static int fs_temp_file(size_t size, uint64_t seed, uint8_t **data) {
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/ef_test_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    *data = malloc(size ? size : 1);
    if (fd < 0 || !*data) {
        if (fd >= 0)
            close(fd);
        free(*data);
        *data = NULL;
        return -1;
    }
    unlink(path);
    fill(*data, size, seed);
    if (!write_all_file(fd, *data, size)) {
        close(fd);
        free(*data);
        *data = NULL;
        return -1;
    }
    return fd;
}

/* A frame from file bytes [off, off + len), whose CRC the caller knows. */
static ef_send fs_frame(uint64_t id, int fd, uint64_t off, size_t len, const uint8_t *bytes,
                        void (*release)(void *), void *ctx) {
    return (ef_send){.type = EF_FRAME_PARCEL,
                     .id = id,
                     .len = len,
                     .has_crc = 1,
                     .payload_crc = ef_crc32c(0, bytes, len),
                     .options = EF_SEND_FROM_FILE,
                     .file_fd = fd,
                     .file_offset = off,
                     .release = release,
                     .ctx = ctx};
}

static void fs_count(void *ctx) { (*(int *)ctx)++; }

#define FS_SIZE (1u << 20)
#define FS_OFF 4097u
#define FS_LEN 200000u

/* One file frame at a non-zero offset, then one from a file sendfile refuses (if this kernel
 * refuses /proc/self/cmdline: it has no splice_read) */
typedef struct fs1 {
    ef_t *t;
    int fd, proc_fd, released, proc_released, frames, closes, timeout, rc[2];
    uint8_t *data, proc[256];
    size_t proc_len;
    uint64_t cli, srv, deadline;
} fs1;

static void fs1_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    fs1 *f = user;
    CHECK_EQ(f->t, status, EF_OK);
    ef_send s = fs_frame(1, f->fd, FS_OFF, FS_LEN, f->data + FS_OFF, fs_count, &f->released);
    f->rc[0] = ef_loop_send_with(loop, conn, &s);
    s = fs_frame(2, f->proc_fd, 2, f->proc_len - 2, f->proc + 2, fs_count, &f->proc_released);
    f->rc[1] = ef_loop_send_with(loop, conn, &s);
}

static void fs1_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    (void)loop, (void)listener;
    ((fs1 *)user)->srv = conn;
}

static void fs1_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *fr) {
    fs1 *f = user;
    f->frames++;
    CHECK_EQ(f->t, fr->id, f->frames);
    /* The parser checked the CRC the sender was told; these are the file's bytes. */
    if (fr->id == 1)
        CHECK(f->t,
              fr->payload.len == FS_LEN && memcmp(fr->payload.ptr, f->data + FS_OFF, FS_LEN) == 0);
    else
        CHECK(f->t, fr->payload.len == f->proc_len - 2 &&
                        memcmp(fr->payload.ptr, f->proc + 2, f->proc_len - 2) == 0);
    if (f->frames == 2) {
        CHECK_EQ(f->t, f->released, 1);
        CHECK_EQ(f->t, f->proc_released, 1);
        CHECK_EQ(f->t, ef_loop_close(loop, conn, 1), EF_OK);
    }
}

static void fs1_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    fs1 *f = user;
    (void)conn;
    CHECK_EQ(f->t, reason, EF_OK);
    if (++f->closes == 2)
        ef_loop_stop(loop);
}

static void fs1_timer(ef_loop *loop, void *user, uint64_t timer) {
    fs1 *f = user;
    if (timer == f->deadline) {
        f->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_file_frame(ef_t *t) {
    fs1 f = {.t = t, .proc_fd = -1};
    f.fd = fs_temp_file(FS_SIZE, 77, &f.data);
    CHECK(t, f.fd >= 0);
    f.proc_fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    CHECK(t, f.proc_fd >= 0);
    ssize_t pl = f.proc_fd >= 0 ? pread(f.proc_fd, f.proc, sizeof f.proc, 0) : -1;
    CHECK(t, pl > 2 && (size_t)pl < sizeof f.proc);
    if (f.fd < 0 || pl <= 2 || (size_t)pl >= sizeof f.proc)
        goto out;
    f.proc_len = (size_t)pl;
    CHECK_EQ(t, lseek(f.fd, 3, SEEK_SET), 3);

    ef_loop_config cfg = {.user = &f,
                          .on_connect = fs1_connect,
                          .on_accept = fs1_accept,
                          .on_frame = fs1_frame,
                          .on_close = fs1_close,
                          .on_timer = fs1_timer};
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        goto out;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &f.cli), EF_OK);

    /* Argument errors queue nothing and release nothing. */
    int wrong = 0;
    ef_send s = fs_frame(9, f.fd, 0, 10, f.data, fs_count, &wrong);
    s.has_crc = 0; /* the loop never reads the bytes: it cannot checksum them */
    CHECK_EQ(t, ef_loop_send_with(loop, f.cli, &s), EF_EINVAL);
    s = fs_frame(9, -1, 0, 10, f.data, fs_count, &wrong);
    CHECK_EQ(t, ef_loop_send_with(loop, f.cli, &s), EF_EINVAL);
    s = fs_frame(9, f.fd, (uint64_t)INT64_MAX - 5, 10, f.data, fs_count, &wrong);
    CHECK_EQ(t, ef_loop_send_with(loop, f.cli, &s), EF_EINVAL);
    s = fs_frame(9, f.fd, 0, 10, f.data, fs_count, &wrong);
    s.options |= 0x80u; /* unknown option */
    CHECK_EQ(t, ef_loop_send_with(loop, f.cli, &s), EF_EINVAL);
    s = fs_frame(9, f.fd, 0, 10, f.data, fs_count, &wrong);
    s.type = 0;
    CHECK_EQ(t, ef_loop_send_with(loop, f.cli, &s), EF_EINVAL);
    /* Without the flag, file_fd and file_offset mean nothing: an ordinary copied frame. */
    s = (ef_send){.type = EF_FRAME_PARCEL, .len = 3, .file_fd = -1, .file_offset = 1};
    CHECK_EQ(t, ef_loop_send_with(loop, f.cli, &s), EF_EINVAL); /* NULL payload, len 3 */
    CHECK_EQ(t, wrong, 0);
    CHECK_EQ(t, ef_loop_pending(loop, f.cli), 0);

    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &f.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, f.timeout, 0);
    CHECK_EQ(t, f.rc[0], EF_OK);
    CHECK_EQ(t, f.rc[1], EF_OK);
    CHECK_EQ(t, f.frames, 2);
    CHECK_EQ(t, f.closes, 2);
    ef_loop_free(loop);
    CHECK_EQ(t, f.released, 1);
    CHECK_EQ(t, f.proc_released, 1);
    CHECK_EQ(t, lseek(f.fd, 0, SEEK_CUR), 3); /* sendfile with an offset leaves the fd's alone */
out:
    if (f.fd >= 0)
        close(f.fd);
    if (f.proc_fd >= 0)
        close(f.proc_fd);
    free(f.data);
}

/* Many file frames interleaved with copied and zero-copy ones, some written at once (from
 * on_connect), some gathered in a batch (a posted function): all arrive, in order. */
#define FSI_FRAMES 600
#define FSI_MAX 70000u

typedef struct fsi {
    ef_t *t;
    int fd, released, to_release, frames, bad, closes, timeout, errors;
    uint8_t *data, *scratch;
    uint64_t cli, deadline;
} fsi;

static size_t fsi_len(uint32_t i) { return i % 17 == 0 ? 0 : (size_t)i * 7919u % FSI_MAX; }
static size_t fsi_off(uint32_t i) { return (size_t)i * 104729u % (FS_SIZE - FSI_MAX); }

static void fsi_send(ef_loop *loop, fsi *f, uint32_t from, uint32_t to) {
    for (uint32_t i = from; i < to; i++) {
        size_t len = fsi_len(i), off = fsi_off(i);
        int rc;
        if (i % 3 == 0) {
            ef_send s = fs_frame(i, f->fd, off, len, f->data + off, fs_count, &f->released);
            rc = ef_loop_send_with(loop, f->cli, &s);
            f->to_release += rc == EF_OK;
        } else if (i % 3 == 1) {
            rc = ef_loop_send_ref(loop, f->cli, EF_FRAME_PARCEL, 0, 0, 0, i, f->data + off, len,
                                  fs_count, &f->released);
            f->to_release += rc == EF_OK;
        } else {
            memcpy(f->scratch, f->data + off, len);
            rc = ef_loop_send(loop, f->cli, EF_FRAME_PARCEL, 0, 0, 0, i, f->scratch, len);
            memset(f->scratch, 0xEE, len);
        }
        f->errors += rc != EF_OK;
    }
}

static void fsi_post(ef_loop *loop, void *arg) { fsi_send(loop, arg, FSI_FRAMES / 2, FSI_FRAMES); }

static void fsi_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    fsi *f = user;
    (void)conn;
    CHECK_EQ(f->t, status, EF_OK);
    fsi_send(loop, f, 0, FSI_FRAMES / 2);
    CHECK_EQ(f->t, ef_loop_post(loop, fsi_post, f), EF_OK);
}

static void fsi_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *fr) {
    fsi *f = user;
    uint32_t i = (uint32_t)f->frames++;
    size_t len = fsi_len(i);
    if (fr->id != i || fr->payload.len != len ||
        (len && memcmp(fr->payload.ptr, f->data + fsi_off(i), len) != 0))
        f->bad++;
    if (f->frames == FSI_FRAMES)
        CHECK_EQ(f->t, ef_loop_close(loop, conn, 1), EF_OK);
}

static void fsi_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    fsi *f = user;
    (void)conn;
    CHECK_EQ(f->t, reason, EF_OK);
    if (++f->closes == 2)
        ef_loop_stop(loop);
}

static void fsi_timer(ef_loop *loop, void *user, uint64_t timer) {
    fsi *f = user;
    if (timer == f->deadline) {
        f->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_file_interleaved(ef_t *t) {
    fsi f = {.t = t};
    f.fd = fs_temp_file(FS_SIZE, 78, &f.data);
    f.scratch = malloc(FSI_MAX);
    CHECK(t, f.fd >= 0 && f.scratch);
    if (f.fd < 0 || !f.scratch)
        goto out;
    ef_loop_config cfg = {.user = &f,
                          .on_connect = fsi_connect,
                          .on_frame = fsi_frame,
                          .on_close = fsi_close,
                          .on_timer = fsi_timer,
                          .send_high_water = 256u << 20}; /* nothing refused */
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        goto out;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &f.cli), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 20000, 0, &f.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, f.timeout, 0);
    CHECK_EQ(t, f.errors, 0);
    CHECK_EQ(t, f.frames, FSI_FRAMES);
    CHECK_EQ(t, f.bad, 0);
    CHECK_EQ(t, f.closes, 2);
    CHECK_EQ(t, f.to_release, 2 * FSI_FRAMES / 3);
    CHECK_EQ(t, f.released, f.to_release); /* each exactly once: all were written */
    ef_loop_free(loop);
    CHECK_EQ(t, f.released, f.to_release);
out:
    if (f.fd >= 0)
        close(f.fd);
    free(f.data);
    free(f.scratch);
}

/* A 16 MiB file frame (more than any socket buffer) to a paused reader: it waits, counted as
 * queued bytes, then arrives whole once the reader resumes; released once; back-pressure holds
 * the next send until on_drain. */
#define FSL_SIZE (16u << 20)
#define FSL_OFF 12345u
#define FSL_LEN (FSL_SIZE - 2 * FSL_OFF)

typedef struct fsl {
    ef_t *t;
    int fd, released, frames, closes, timeout, turns, drains, busy, rc;
    uint8_t *data;
    uint64_t cli, srv, deadline;
    int64_t pending_sent, pending_paused;
} fsl;

static void fsl_wait(ef_loop *loop, void *arg) {
    fsl *f = arg;
    if (++f->turns < 50) {
        ef_loop_post(loop, fsl_wait, f);
        return;
    }
    /* Nothing was read: the segment's tail is still queued, and refuses more. */
    f->pending_paused = ef_loop_pending(loop, f->cli);
    CHECK_EQ(f->t, f->released, 0);
    uint8_t small[8] = {0};
    f->busy = ef_loop_send(loop, f->cli, EF_FRAME_RESULT, 0, 0, 0, 99, small, sizeof small);
    CHECK_EQ(f->t, ef_loop_pause(loop, f->srv, 0), EF_OK);
}

static void fsl_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    fsl *f = user;
    CHECK_EQ(f->t, status, EF_OK);
    ef_send s = fs_frame(1, f->fd, FSL_OFF, FSL_LEN, f->data + FSL_OFF, fs_count, &f->released);
    f->rc = ef_loop_send_with(loop, conn, &s);
    f->pending_sent = ef_loop_pending(loop, conn);
    CHECK_EQ(f->t, ef_loop_post(loop, fsl_wait, f), EF_OK);
}

static void fsl_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    fsl *f = user;
    (void)listener;
    f->srv = conn;
    CHECK_EQ(f->t, ef_loop_pause(loop, conn, 1), EF_OK);
}

static void fsl_drain(ef_loop *loop, void *user, uint64_t conn) {
    fsl *f = user;
    f->drains++;
    uint8_t small[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_EQ(f->t, ef_loop_send(loop, conn, EF_FRAME_RESULT, 0, 0, 0, 2, small, sizeof small),
             EF_OK);
}

static void fsl_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *fr) {
    fsl *f = user;
    f->frames++;
    CHECK_EQ(f->t, fr->id, f->frames);
    if (fr->id == 1) {
        CHECK(f->t, fr->payload.len == FSL_LEN &&
                        memcmp(fr->payload.ptr, f->data + FSL_OFF, FSL_LEN) == 0);
        CHECK_EQ(f->t, f->released, 1);
    } else {
        CHECK_EQ(f->t, fr->payload.len, 8);
        CHECK_EQ(f->t, ef_loop_close(loop, conn, 1), EF_OK);
    }
}

static void fsl_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    fsl *f = user;
    (void)conn;
    CHECK_EQ(f->t, reason, EF_OK);
    if (++f->closes == 2)
        ef_loop_stop(loop);
}

static void fsl_timer(ef_loop *loop, void *user, uint64_t timer) {
    fsl *f = user;
    if (timer == f->deadline) {
        f->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_file_large_slow_reader(ef_t *t) {
    fsl f = {.t = t};
    f.fd = fs_temp_file(FSL_SIZE, 79, &f.data);
    CHECK(t, f.fd >= 0);
    if (f.fd < 0)
        return;
    ef_loop_config cfg = {.user = &f,
                          .on_connect = fsl_connect,
                          .on_accept = fsl_accept,
                          .on_frame = fsl_frame,
                          .on_close = fsl_close,
                          .on_drain = fsl_drain,
                          .on_timer = fsl_timer,
                          .send_high_water = 1u << 20,
                          .send_low_water = 256u << 10};
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (loop) {
        uint64_t lid;
        uint16_t port;
        CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
        CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &f.cli), EF_OK);
        CHECK_EQ(t, ef_loop_timer_add(loop, 20000, 0, &f.deadline), EF_OK);
        CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    }
    CHECK_EQ(t, f.timeout, 0);
    CHECK_EQ(t, f.rc, EF_OK);
    /* The segment's bytes count as queued: most of 16 MiB waited for the reader. */
    CHECK(t, f.pending_sent > 0 && f.pending_sent <= (int64_t)(FSL_LEN + EF_FRAME_HEADER_SIZE));
    CHECK(t, f.pending_paused > (int64_t)(4u << 20));
    CHECK_EQ(t, f.busy, EF_EBUSY);
    CHECK_EQ(t, f.drains, 1);
    CHECK_EQ(t, f.frames, 2);
    CHECK_EQ(t, f.closes, 2);
    CHECK_EQ(t, f.released, 1);
    ef_loop_free(loop);
    CHECK_EQ(t, f.released, 1);
    close(f.fd);
    free(f.data);
}

/* A file frame still queued when the connection goes: release runs once, before on_close (or
 * in ef_loop_free). PEER_RESET: the peer half-closes then resets while the sender does not
 * read, so the next sendfile fails with EPIPE — which raises SIGPIPE, and the process must
 * survive it. */
enum { FSC_USER_CLOSE, FSC_PEER_RESET, FSC_LOOP_FREED };
#define FSC_LEN (8u << 20)

typedef struct fsc {
    ef_t *t;
    int mode, raw, fd, released, released_at_close, closes, reason, timeout, rc;
    uint8_t *data;
    uint64_t srv, deadline;
    int64_t pending;
} fsc;

static void fsc_act(ef_loop *loop, void *arg) {
    fsc *f = arg;
    if (f->mode == FSC_USER_CLOSE) {
        CHECK_EQ(f->t, ef_loop_close(loop, f->srv, 0), EF_OK);
    } else if (f->mode == FSC_PEER_RESET) {
        shutdown(f->raw, SHUT_WR); /* our side goes to CLOSE_WAIT: a reset then means EPIPE */
        close(f->raw);             /* unread input: the kernel answers with a reset */
        f->raw = -1;
    } else {
        ef_loop_stop(loop);
    }
}

static void fsc_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    fsc *f = user;
    (void)listener;
    f->srv = conn;
    ef_send s = fs_frame(1, f->fd, 0, FSC_LEN, f->data, fs_count, &f->released);
    f->rc = ef_loop_send_with(loop, conn, &s);
    f->pending = ef_loop_pending(loop, conn);
    if (f->mode == FSC_PEER_RESET) /* not reading, it sees the reset first in a write */
        CHECK_EQ(f->t, ef_loop_pause(loop, conn, 1), EF_OK);
    CHECK_EQ(f->t, ef_loop_post(loop, fsc_act, f), EF_OK);
}

static void fsc_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    fsc *f = user;
    (void)conn;
    f->closes++;
    f->reason = reason;
    f->released_at_close = f->released;
    ef_loop_stop(loop);
}

static void fsc_timer(ef_loop *loop, void *user, uint64_t timer) {
    fsc *f = user;
    if (timer == f->deadline) {
        f->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void fsc_run(ef_t *t, int mode) {
    fsc f = {.t = t, .mode = mode, .raw = -1};
    f.fd = fs_temp_file(FSC_LEN, 80, &f.data);
    CHECK(t, f.fd >= 0);
    if (f.fd < 0)
        return;
    ef_loop_config cfg = {.user = &f,
                          .on_accept = fsc_accept,
                          .on_close = fsc_close,
                          .on_timer = fsc_timer,
                          .send_high_water = 64u << 20};
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        goto out;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    f.raw = raw_connect(port, 4096);
    CHECK(t, f.raw >= 0);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &f.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, f.timeout, 0);
    CHECK_EQ(t, f.rc, EF_OK);
    CHECK(t, f.pending > 0); /* the raw peer never reads: the segment is still queued */
    switch (mode) {
    case FSC_USER_CLOSE:
        CHECK_EQ(t, f.closes, 1);
        CHECK_EQ(t, f.reason, EF_OK);
        CHECK_EQ(t, f.released_at_close, 1);
        break;
    case FSC_PEER_RESET:
        CHECK_EQ(t, f.closes, 1);
        CHECK_EQ(t, f.reason, EF_ESYS);
        CHECK(t, ef_loop_last_errno(loop) == EPIPE || ef_loop_last_errno(loop) == ECONNRESET);
        CHECK_EQ(t, f.released_at_close, 1);
        break;
    default:
        CHECK_EQ(t, f.closes, 0);
        CHECK_EQ(t, f.released, 0);
        break;
    }
    ef_loop_free(loop);
    CHECK_EQ(t, f.released, 1);
out:
    if (f.raw >= 0)
        close(f.raw);
    close(f.fd);
    free(f.data);
}

static void test_loop_file_release_on_close(ef_t *t) { fsc_run(t, FSC_USER_CLOSE); }
static void test_loop_file_release_on_reset(ef_t *t) { fsc_run(t, FSC_PEER_RESET); }
static void test_loop_file_release_on_free(ef_t *t) { fsc_run(t, FSC_LOOP_FREED); }

/* A file shorter than the frame said closes the connection (EF_ESYS, EIO) rather than hang or
 * spin, by sendfile and by the copying slow path alike; the frame before it arrives. */
#define FST_SIZE (100u << 10)

typedef struct fst {
    ef_t *t;
    int fd, proc_fd, released, frames, closes, timeout, sender_eio, sender_closes;
    int peer_reasons[4], npeer;
    uint8_t *data, proc[256];
    size_t proc_len;
    uint64_t cli[2], deadline;
} fst;

static void fst_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    fst *f = user;
    CHECK_EQ(f->t, status, EF_OK);
    uint8_t hello[5] = "hello";
    CHECK_EQ(f->t, ef_loop_send(loop, conn, EF_FRAME_PARCEL, 0, 0, 0, 1, hello, sizeof hello),
             EF_OK);
    /* The CRC is of bytes the file does not have: it never gets that far. */
    ef_send s =
        conn == f->cli[0]
            ? fs_frame(2, f->fd, 60u << 10, FST_SIZE, f->data, fs_count, &f->released)
            : fs_frame(2, f->proc_fd, 1, f->proc_len + 100, f->data, fs_count, &f->released);
    CHECK_EQ(f->t, ef_loop_send_with(loop, conn, &s), EF_OK);
}

static void fst_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *fr) {
    fst *f = user;
    (void)loop, (void)conn;
    f->frames++;
    CHECK_EQ(f->t, fr->id, 1);
}

static void fst_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    fst *f = user;
    if (conn == f->cli[0] || conn == f->cli[1]) {
        f->sender_closes++;
        f->sender_eio += reason == EF_ESYS && ef_loop_last_errno(loop) == EIO;
    } else if (f->npeer < 4) {
        f->peer_reasons[f->npeer++] = reason;
    }
    if (++f->closes == 4)
        ef_loop_stop(loop);
}

static void fst_timer(ef_loop *loop, void *user, uint64_t timer) {
    fst *f = user;
    if (timer == f->deadline) {
        f->timeout = 1;
        ef_loop_stop(loop);
    }
}

static void test_loop_file_truncated(ef_t *t) {
    fst f = {.t = t, .proc_fd = -1};
    f.fd = fs_temp_file(FST_SIZE, 81, &f.data);
    f.proc_fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t pl = f.proc_fd >= 0 ? pread(f.proc_fd, f.proc, sizeof f.proc, 0) : -1;
    CHECK(t, f.fd >= 0 && pl > 0);
    if (f.fd < 0 || pl <= 0)
        goto out;
    f.proc_len = (size_t)pl;
    ef_loop_config cfg = {.user = &f,
                          .on_connect = fst_connect,
                          .on_frame = fst_frame,
                          .on_close = fst_close,
                          .on_timer = fst_timer};
    ef_loop *loop = ef_loop_create(&cfg, NULL);
    CHECK(t, loop != NULL);
    if (!loop)
        goto out;
    uint64_t lid;
    uint16_t port;
    CHECK_EQ(t, ef_loop_listen(loop, "127.0.0.1", 0, &lid, &port), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &f.cli[0]), EF_OK);
    CHECK_EQ(t, ef_loop_connect(loop, "127.0.0.1", port, &f.cli[1]), EF_OK);
    CHECK_EQ(t, ef_loop_timer_add(loop, 10000, 0, &f.deadline), EF_OK);
    CHECK_EQ(t, ef_loop_run(loop), EF_OK);
    CHECK_EQ(t, f.timeout, 0);
    CHECK_EQ(t, f.frames, 2);
    CHECK_EQ(t, f.sender_closes, 2);
    CHECK_EQ(t, f.sender_eio, 2);
    CHECK_EQ(t, f.npeer, 2);
    for (int i = 0; i < f.npeer; i++)
        CHECK_EQ(t, f.peer_reasons[i], EF_ECLOSED); /* closed in the middle of a frame */
    CHECK_EQ(t, f.released, 2);
    ef_loop_free(loop);
    CHECK_EQ(t, f.released, 2);
out:
    if (f.fd >= 0)
        close(f.fd);
    if (f.proc_fd >= 0)
        close(f.proc_fd);
    free(f.data);
}

void suite_loop(ef_t *t) {
    RUN(t, test_loop_tampered_frame_is_refused);
    RUN(t, test_loop_send_with_known_crc);
    RUN(t, test_loop_api_contracts);
    RUN(t, test_loop_timers);
    RUN(t, test_loop_stop_from_thread);
    RUN(t, test_loop_post_threads);
    RUN(t, test_loop_post_survives_free);
    RUN(t, test_loop_connect_refused);
    RUN(t, test_loop_one_byte_at_a_time);
    RUN(t, test_loop_bad_frames);
    RUN(t, test_loop_pause_resume);
    RUN(t, test_loop_backpressure);
    RUN(t, test_loop_zero_copy_delivered);
    RUN(t, test_loop_zero_copy_user_close);
    RUN(t, test_loop_zero_copy_peer_dies);
    RUN(t, test_loop_zero_copy_loop_freed);
    RUN(t, test_loop_file_frame);
    RUN(t, test_loop_file_interleaved);
    RUN(t, test_loop_file_large_slow_reader);
    RUN(t, test_loop_file_release_on_close);
    RUN(t, test_loop_file_release_on_reset);
    RUN(t, test_loop_file_release_on_free);
    RUN(t, test_loop_file_truncated);
    RUN(t, test_loop_exchange_10k);
}
