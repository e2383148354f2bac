/* echo_worker — a C-only program on the public header alone: it runs an ElasticFlow event loop,
 * listens on 127.0.0.1, and echoes every frame it receives (same type, flags, codec, aux, id and
 * payload). A BYE is answered with BYE, then the connection is closed once that is written.
 *
 *   echo_worker [--port N]     serve until SIGINT/SIGTERM (port 0, the default, picks a free one)
 *   echo_worker --demo N       also connect to itself, send N frames of assorted sizes, check
 *                              every echo, say how it went and exit (0 when all came back intact)
 *
 * Build (after `make install`):
 *   cc -std=c11 -D_GNU_SOURCE CCore/examples/echo_worker.c \
 *      $(pkg-config --cflags --libs elasticflow) -o echo_worker
 * (_GNU_SOURCE for the program's own sigwait and pthread calls; the header needs none)
 * or from the tree (after `make lib`; what `make cexample` does):
 *   cc -std=c11 -D_GNU_SOURCE -ICCore/include CCore/examples/echo_worker.c \
 *      build/libelasticflow.a -lzstd -llz4 -lz -lbz2 -lcrypto -lpthread -o build/echo_worker
 *
 * Signals are turned into ef_loop_stop by a thread of their own (sigwait): stop is one of the two
 * calls that are safe from any thread, and a handler would not be the right place for it. */
#include "elasticflow.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct app {
    ef_loop *loop;
    /* --demo */
    uint64_t client;
    uint32_t frames, sent, echoed, bad;
    uint64_t bytes;
    uint8_t *scratch;
    bool bye_seen;
} app;

#define DEMO_MAX_PAYLOAD (70u * 1000u)
#define SEND_HIGH_WATER (4u << 20)

static void pattern(uint8_t *p, size_t n, uint32_t seq) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seq * 31u + i * 7u + (i >> 9));
}

static size_t demo_size(uint32_t seq) { return (size_t)seq * 997u % DEMO_MAX_PAYLOAD; }

/* Send until done or pushed back; on_drain calls again. */
static void demo_send(app *a) {
    while (a->sent < a->frames) {
        size_t n = demo_size(a->sent);
        pattern(a->scratch, n, a->sent);
        int rc = ef_loop_send(a->loop, a->client, EF_FRAME_PARCEL, 0, EF_CODEC_NONE, (uint32_t)n,
                              a->sent, a->scratch, n);
        if (rc == EF_EBUSY)
            return;
        if (rc != EF_OK) {
            fprintf(stderr, "demo: send: %s\n", ef_strerror(rc));
            ef_loop_stop(a->loop);
            return;
        }
        a->sent++;
    }
    if (a->sent == a->frames)
        ef_loop_send(a->loop, a->client, EF_FRAME_BYE, 0, 0, 0, 0, NULL, 0);
}

static void on_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    char peer[64];
    (void)user;
    (void)listener;
    if (ef_loop_peer(loop, conn, peer, sizeof peer) > 0)
        fprintf(stderr, "echo_worker: connection %llu from %s\n", (unsigned long long)conn, peer);
}

static void on_connect(ef_loop *loop, void *user, uint64_t conn, int status) {
    app *a = user;
    (void)loop;
    (void)conn;
    if (status != EF_OK) {
        fprintf(stderr, "demo: connect: %s (errno %d)\n", ef_strerror(status),
                ef_loop_last_errno(loop));
        return; /* on_close follows and stops the loop */
    }
    demo_send(a);
}

static void on_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    app *a = user;
    if (conn == a->client) {
        /* The demo client checking what came back. */
        if (f->type == EF_FRAME_BYE) {
            a->bye_seen = true;
            ef_loop_close(loop, conn, 0);
            return;
        }
        size_t n = demo_size((uint32_t)f->id);
        pattern(a->scratch, n, (uint32_t)f->id);
        if (f->id != a->echoed || f->payload.len != n || f->aux != n ||
            (n && memcmp(f->payload.ptr, a->scratch, n) != 0))
            a->bad++;
        a->echoed++;
        a->bytes += f->payload.len;
        return;
    }
    /* The worker side: echo. The payload is a view into the loop's read buffer; ef_loop_send
     * copies it before this callback returns. */
    int rc = ef_loop_send(loop, conn, f->type, f->flags, f->codec, f->aux, f->id, f->payload.ptr,
                          f->payload.len);
    if (rc != EF_OK) {
        /* Cannot happen while we pause at the high water (below); closing is the honest answer. */
        fprintf(stderr, "echo_worker: connection %llu: %s; closing it\n", (unsigned long long)conn,
                ef_strerror(rc));
        ef_loop_close(loop, conn, 0);
        return;
    }
    if (f->type == EF_FRAME_BYE) {
        ef_loop_close(loop, conn, 1);
        return;
    }
    /* A peer that sends faster than it reads its answers: stop reading it until our queue to it
     * drains, so TCP pushes back on it instead of our memory growing. */
    if (ef_loop_pending(loop, conn) >= (int64_t)SEND_HIGH_WATER)
        ef_loop_pause(loop, conn, 1);
}

static void on_drain(ef_loop *loop, void *user, uint64_t conn) {
    app *a = user;
    if (conn == a->client)
        demo_send(a);
    else
        ef_loop_pause(loop, conn, 0); /* frames read before the pause come first */
}

static void on_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    app *a = user;
    if (reason != EF_OK)
        fprintf(stderr, "echo_worker: connection %llu closed: %s\n", (unsigned long long)conn,
                ef_strerror(reason));
    if (conn == a->client)
        ef_loop_stop(loop);
}

typedef struct signals {
    sigset_t set;
    ef_loop *loop;
} signals;

static void *signal_thread(void *arg) {
    signals *s = arg;
    int sig;
    if (sigwait(&s->set, &sig) == 0)
        ef_loop_stop(s->loop);
    return NULL;
}

int main(int argc, char **argv) {
    unsigned port = 0;
    long demo = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--demo") && i + 1 < argc)
            demo = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--port N] [--demo FRAMES]\n", argv[0]);
            return 2;
        }
    }
    if (ef_version_number() != EF_VERSION_NUMBER) {
        fprintf(stderr, "library %s does not match this header\n", ef_version_string());
        return 1;
    }

    app a = {0};
    ef_loop_config cfg = {0};
    cfg.user = &a;
    cfg.on_accept = on_accept;
    cfg.on_connect = on_connect;
    cfg.on_frame = on_frame;
    cfg.on_drain = on_drain;
    cfg.on_close = on_close;
    cfg.max_payload = 16u << 20;
    cfg.send_high_water = SEND_HIGH_WATER;
    int err;
    a.loop = ef_loop_create(&cfg, &err);
    if (!a.loop) {
        fprintf(stderr, "ef_loop_create: %s\n", ef_strerror(err));
        return 1;
    }
    uint64_t listener;
    uint16_t bound;
    int rc = ef_loop_listen(a.loop, "127.0.0.1", (uint16_t)port, &listener, &bound);
    if (rc != EF_OK) {
        fprintf(stderr, "listen: %s (errno %d)\n", ef_strerror(rc), ef_loop_last_errno(a.loop));
        ef_loop_free(a.loop);
        return 1;
    }
    printf("echo_worker listening on 127.0.0.1:%u\n", (unsigned)bound);
    fflush(stdout);

    int status = 0;
    if (demo >= 0) {
        a.frames = (uint32_t)demo;
        a.scratch = malloc(DEMO_MAX_PAYLOAD);
        if (!a.scratch || ef_loop_connect(a.loop, "127.0.0.1", bound, &a.client) != EF_OK) {
            fprintf(stderr, "demo: cannot start\n");
            free(a.scratch);
            ef_loop_free(a.loop);
            return 1;
        }
        ef_loop_run(a.loop);
        bool ok = a.echoed == a.frames && a.bad == 0 && a.bye_seen;
        printf("demo: %u of %u frames echoed (%llu payload bytes), %u bad, %s\n", a.echoed,
               a.frames, (unsigned long long)a.bytes, a.bad, ok ? "ok" : "FAILED");
        status = ok ? 0 : 1;
        free(a.scratch);
    } else {
        /* Block the signals everywhere (threads inherit the mask) and wait for them on a thread
         * of their own. */
        signals sig = {.loop = a.loop};
        sigemptyset(&sig.set);
        sigaddset(&sig.set, SIGINT);
        sigaddset(&sig.set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sig.set, NULL);
        pthread_t th;
        if (pthread_create(&th, NULL, signal_thread, &sig) != 0) {
            ef_loop_free(a.loop);
            return 1;
        }
        rc = ef_loop_run(a.loop);
        pthread_join(th, NULL);
        status = rc == EF_OK ? 0 : 1;
    }
    ef_loop_free(a.loop);
    return status;
}
