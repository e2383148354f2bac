/* Internals of the event loop shared by loop.c (epoll, ids, timers, posts) and net.c (sockets,
 * connections, buffers, send queues). Not installed; only those two files include it. */
#ifndef EF_LOOP_INTERNAL_H
#define EF_LOOP_INTERNAL_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* Kinds of objects named by ids. */
enum { EF__LISTENER = 1, EF__CONN = 2, EF__TIMER = 3 };

/* Ids are (sequence << EF__SLOT_BITS) | slot: the slot makes lookup an array index, the
 * loop-wide sequence makes an id unique forever (2^39 objects) even when its slot is reused. */
#define EF__SLOT_BITS 24
#define EF__SLOT_MASK ((UINT64_C(1) << EF__SLOT_BITS) - 1)
/* epoll data of the eventfd; no object has it because sequences start at 1. */
#define EF__WAKE_ID UINT64_C(0)

/* Common head of every object registered in the id table and, through its fd, with epoll. */
typedef struct ef__obj {
    uint64_t id;
    int fd;
    uint8_t kind;
    bool watched;    /* added to epoll */
    uint32_t events; /* interest last given to epoll */
} ef__obj;

/* Kinds of queued runs. */
enum {
    EF__RUN_RING = 0, /* in the connection's ring; its bytes follow the previous ring run's */
    EF__RUN_REF = 1,  /* a caller's zero-copy payload */
    EF__RUN_FILE = 2, /* bytes of a caller's file, written with sendfile */
};

/* A run of queued bytes. REF and FILE runs own a release, called once when done or dropped. */
typedef struct ef__seg {
    uint8_t kind;
    bool copy; /* FILE: sendfile refused this file or socket; pread + sendmsg instead */
    int fd;    /* FILE */
    /* FILE, sealed MAC only (else NULL): the frame's tag, fed as the run is read a piece at a
     * time into the connection's carry and written from there; len counts the tag that follows
     * the file's bytes. */
    struct ef__tagger *tagger;
    union {
        const uint8_t *ref; /* REF */
        uint64_t offset;    /* FILE: where the run's first byte is in the file */
    };
    size_t len;
    void (*release)(void *ctx);
    void *ctx;
} ef__seg;

enum { EF__CONNECTING = 1, EF__OPEN = 2, EF__DEAD = 3 };

typedef struct ef__conn {
    ef__obj obj;
    uint8_t state;
    bool closing;        /* ef_loop_close(flush): close once the queue is written */
    bool paused;         /* ef_loop_pause */
    bool parked;         /* paused with a hang-up pending: out of epoll until resumed */
    bool over_high;      /* reached the high water: on_drain owed */
    bool was_connecting; /* died before connecting: on_connect owed */
    bool dirty;          /* frames queued during a batch: flushed when the batch ends */
    int reason;          /* on_close reason once DEAD */
    int sys_errno;
    struct ef__conn *next_dead;

    uint8_t *rbuf; /* unparsed input always starts at rbuf[0] */
    size_t rcap, rlen;
    uint8_t small_run; /* frames parsed since the last one bigger than read_buffer (capped) */

    uint8_t *ring; /* copied output, FIFO, may wrap */
    size_t ring_cap, ring_head, ring_used;
    ef__seg *segs; /* FIFO ring of runs */
    size_t seg_cap, seg_head, seg_count;
    size_t seg_off; /* bytes of the front run already written */
    /* The piece of a sealed file run read and fed to its tag, from carry_off not yet written
     * (carry_off == carry_len: none). Allocated with the first such run. */
    uint8_t *carry;
    size_t carry_off, carry_len;
    size_t pending; /* bytes queued in all runs, minus seg_off */

    struct sockaddr_storage peer;
    socklen_t peer_len;

    /* ef_loop_seal: frames sent are sealed by tx, frames received opened by rx (both NULL
     * before). trusted: a received frame has passed its tag check, so the peer holds the keys
     * and the pre-authentication payload limit no longer applies. */
    ef_seal *tx, *rx;
    bool trusted;
} ef__conn;

typedef struct ef__post {
    void (*fn)(ef_loop *loop, void *arg);
    void *arg;
} ef__post;

#define EF__MAX_EVENTS 256

struct ef_loop {
    ef_loop_config cfg;
    int epfd;
    int wakefd;
    bool running;
    int last_errno;

    ef__obj **slots; /* id table */
    uint32_t slot_cap;
    uint32_t *free_slots;
    uint32_t nfree;
    uint32_t slots_used; /* high-water mark of slots ever handed out */
    uint64_t seq;

    ef__conn *dead_head, *dead_tail; /* closed, on_close not yet delivered */
    uint64_t *resumed;               /* ids of connections resumed with input buffered */
    size_t nresumed, resumed_cap;

    /* Posts: producers append under the lock; the loop swaps the array for the spare one and runs
     * the batch without the lock, so both arrays keep their capacity. */
    pthread_mutex_t post_lock;
    ef__post *posts, *posts_spare;
    size_t nposts, posts_cap, spare_cap;
    atomic_bool stop;
    /* True while posted functions or frame callbacks run: sends made then are queued rather than
     * written at once, and go out together in one writev when the loop next sees the socket
     * writable — one system call for a batch of frames instead of one each. */
    bool batching;
    uint64_t *dirty; /* ids of connections with frames queued during the batch (reused array) */
    size_t ndirty, dirty_cap;

    /* Sealing a file payload reads it here, a piece at a time (allocated on first use). */
    uint8_t *scratch;

    struct epoll_event events[EF__MAX_EVENTS];
};

/* net.c: write what the batch queued (called when the outermost batch ends) */
void ef__flush_dirty(ef_loop *loop);

/* loop.c */
int ef__obj_attach(ef_loop *loop, ef__obj *obj, uint8_t kind);
void ef__obj_detach(ef_loop *loop, ef__obj *obj);
ef__obj *ef__obj_find(const ef_loop *loop, uint64_t id, uint8_t kind);
int ef__obj_watch(ef_loop *loop, ef__obj *obj, uint32_t events);
void ef__obj_unwatch(ef_loop *loop, ef__obj *obj);
int ef__sys(ef_loop *loop, int err); /* records err, returns EF_ESYS */

/* net.c */
void ef__listener_event(ef_loop *loop, ef__obj *obj);
void ef__listener_destroy(ef_loop *loop, ef__obj *obj);
void ef__conn_event(ef_loop *loop, ef__conn *c, uint32_t events);
void ef__conn_kill(ef_loop *loop, ef__conn *c, int reason, int err);
void ef__conn_resume_parse(ef_loop *loop, ef__conn *c);
void ef__conn_destroy(ef__conn *c); /* releases refs, frees memory: no callbacks */
void ef__dead_flush(ef_loop *loop, bool callbacks);

/* tcpinfo.c: TCP_INFO's delivery rate of a socket (bytes per second) and whether the sender
 * limited it; EF_OK or EF_ESYS. */
int ef__tcp_delivery_rate(int fd, uint64_t *bytes_per_second, int *app_limited);

#endif
