/* Sockets for the event loop: listeners, connections, their read buffers and send queues.
 *
 * Read path: each connection has one read buffer; whatever the socket holds is read into it, every
 * complete frame is parsed in place and handed to on_frame as a view, and the partial frame left
 * over is moved to the front. The buffer grows (slow path) only when one frame does not fit.
 *
 * Write path: a connection's queue is a FIFO of runs. Copied frames go into a byte ring owned by
 * the connection (reused; grows in a slow path), zero-copy payloads stay where the caller keeps
 * them, and file payloads stay in the file. One sendmsg gathers as many runs as fit an iovec
 * batch, up to a file run, which sendfile writes before the runs after it (on a sealed
 * connection, MAC only, a file run is read a piece at a time into the connection's carry, fed to
 * its frame's tag and sent from there: ef__conn_write_tagged). A frame sent on an
 * empty queue is first written straight from the caller's memory; only what the socket refuses
 * is queued. */
#include "loop_internal.h"
#include "session_internal.h"
#ifdef EF_TESTING
#include "elasticflow_testing.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <unistd.h>

#define EF__IOV_BATCH 64
/* Per ready event, so one busy peer cannot starve the others: epoll reports the rest again. */
#define EF__READS_PER_EVENT 16
/* Small frames in a row after which a read buffer grown for big ones is given back. */
#define EF__SHRINK_AFTER_SMALL 4
#define EF__ACCEPTS_PER_EVENT 64
#define EF__RING_INITIAL (64u * 1024u)
#define EF__SEGS_INITIAL 16u
/* Offset of the payload length in a frame header (layout in elasticflow.h). */
#define EF__FRAME_LEN_OFFSET 8
/* A file run that sendfile refuses is copied through the ring's free space in pieces this big. */
#define EF__COPY_CHUNK (64u * 1024u)
/* A sealed file run is read and written in pieces this big: still in L2 when the tag reads a
 * piece back and sendmsg copies it out, and few reads per parcel. */
#define EF__CARRY_SIZE (256u * 1024u)

/* File offsets reach sendfile and pread as off_t: the range check in ef_loop_send_with is
 * against INT64_MAX, so off_t must be 64 bits (it is on every 64-bit Linux). */
_Static_assert(sizeof(off_t) == sizeof(int64_t), "off_t must be 64 bits");

static size_t ef__min(size_t a, size_t b) { return a < b ? a : b; }

static void ef__nodelay(int fd) {
    int one = 1;
    /* Frames are written whole by writev; Nagle would only delay the last segment. A failure
     * costs latency, not correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int ef__so_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static ssize_t ef__sendv(int fd, struct iovec *iov, int n, int flags) {
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    /* sendmsg rather than writev: only it takes MSG_NOSIGNAL, so a peer that vanished gives EPIPE
     * instead of killing the process with SIGPIPE. */
    return sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
}

/* sendfile has no MSG_NOSIGNAL: a write to a peer that reset raises SIGPIPE, whose default kills
 * the process, and this library promises its callers need not ignore it. So SIGPIPE is blocked on
 * this thread for the call, and the one the call raised (thread-directed, so it stays pending
 * here) is taken back before the mask is restored — unless one was already pending, blocked by
 * the caller, which must not be swallowed. Two sigprocmask calls per sendfile are noise next to
 * moving a parcel of file bytes. */
static ssize_t ef__sendfile(int sock, int fd, off_t *offset, size_t count) {
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    bool had =
        sigismember(&old, SIGPIPE) && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    ssize_t n = sendfile(sock, fd, offset, count);
    int err = errno;
    if (n < 0 && err == EPIPE && !had) {
        const struct timespec now = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &now) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

static int ef__resolve(const char *host, uint16_t port, bool passive, struct addrinfo **out) {
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    if (host && !*host)
        host = NULL;
    if (!host && !passive)
        return EF_EINVAL;
    if (getaddrinfo(host, service, &hints, out) != 0)
        return EF_EINVAL;
    return EF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections: life and death                                                                */
/* ------------------------------------------------------------------------------------------ */

static ef__conn *ef__conn_new(ef_loop *loop, int fd, uint8_t state, const void *addr,
                              socklen_t addr_len, int *error) {
    ef__conn *c = calloc(1, sizeof *c);
    uint8_t *rbuf = malloc(loop->cfg.read_buffer);
    if (!c || !rbuf) {
        free(c);
        free(rbuf);
        *error = EF_ENOMEM;
        return NULL;
    }
    c->obj.fd = fd;
    c->state = state;
    c->rbuf = rbuf;
    c->rcap = loop->cfg.read_buffer;
    if (addr_len > sizeof c->peer)
        addr_len = sizeof c->peer;
    memcpy(&c->peer, addr, addr_len);
    c->peer_len = addr_len;
    int rc = ef__obj_attach(loop, &c->obj, EF__CONN);
    if (rc < 0) {
        free(rbuf);
        free(c);
        *error = rc;
        return NULL;
    }
    return c;
}

/* Mark dead, give back the fd and the id at once (so the id answers EF_ECLOSED and the fd number
 * may be reused), but keep the memory until ef__dead_flush: the caller may be a handler still
 * walking this connection's buffers. */
void ef__conn_kill(ef_loop *loop, ef__conn *c, int reason, int err) {
    if (c->state == EF__DEAD)
        return;
    c->was_connecting = c->state == EF__CONNECTING;
    c->state = EF__DEAD;
    c->reason = reason;
    c->sys_errno = err;
    if (reason == EF_ESYS)
        loop->last_errno = err;
    ef__obj_unwatch(loop, &c->obj);
    close(c->obj.fd);
    c->obj.fd = -1;
    ef__obj_detach(loop, &c->obj);
    c->next_dead = NULL;
    if (loop->dead_tail)
        loop->dead_tail->next_dead = c;
    else
        loop->dead_head = c;
    loop->dead_tail = c;
}

void ef__conn_destroy(ef__conn *c) {
    for (size_t i = 0; i < c->seg_count; i++) {
        const ef__seg *s = &c->segs[(c->seg_head + i) % c->seg_cap];
        if (s->kind == EF__RUN_FILE && s->tagger)
            ef__tagger_release(c->tx, s->tagger);
        if (s->kind != EF__RUN_RING && s->release)
            s->release(s->ctx);
    }
    ef_seal_free(c->tx);
    free(c->carry);
    ef_seal_free(c->rx);
    free(c->rbuf);
    free(c->ring);
    free(c->segs);
    free(c);
}

void ef__dead_flush(ef_loop *loop, bool callbacks) {
    ef__conn *c;
    while ((c = loop->dead_head) != NULL) {
        loop->dead_head = c->next_dead;
        if (!loop->dead_head)
            loop->dead_tail = NULL;
        uint64_t id = c->obj.id;
        int reason = c->reason, sys_errno = c->sys_errno;
        bool was_connecting = c->was_connecting;
        /* Refs go back before on_close, so on_close may free whatever they pointed into. */
        ef__conn_destroy(c);
        if (!callbacks)
            continue;
        const ef_loop_config *cfg = &loop->cfg;
        if (was_connecting && cfg->on_connect) {
            if (reason == EF_ESYS)
                loop->last_errno = sys_errno;
            cfg->on_connect(loop, cfg->user, id, reason == EF_OK ? EF_ECLOSED : reason);
        }
        if (cfg->on_close) {
            if (reason == EF_ESYS) /* again: on_connect may have made calls that set it */
                loop->last_errno = sys_errno;
            cfg->on_close(loop, cfg->user, id, reason);
        }
    }
}

/* Give epoll the interest the connection's state calls for. */
static int ef__conn_update(ef_loop *loop, ef__conn *c) {
    if (c->state == EF__DEAD || c->parked)
        return EF_OK;
    uint32_t events;
    if (c->state == EF__CONNECTING)
        events = EPOLLOUT;
    else
        events = (c->paused || c->closing ? 0u : (uint32_t)EPOLLIN) |
                 (c->seg_count ? (uint32_t)EPOLLOUT : 0u);
    int rc = ef__obj_watch(loop, &c->obj, events);
    if (rc < 0)
        ef__conn_kill(loop, c, rc, loop->last_errno);
    return rc;
}

/* A flushing close has written everything. */
static void ef__conn_finish_close(ef_loop *loop, ef__conn *c) {
    /* The FIN follows our last frame; then input the peer sent meanwhile is read and dropped,
     * because closing a socket with unread input sends a reset, and a reset can destroy the
     * frames just written before the peer reads them. The sink is on the stack: the read buffer
     * may still back the payload of an on_frame in progress. */
    (void)shutdown(c->obj.fd, SHUT_WR);
    uint8_t sink[4096];
    for (int i = 0; i < EF__READS_PER_EVENT; i++)
        if (recv(c->obj.fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
            break;
    ef__conn_kill(loop, c, EF_OK, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Read path                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* The largest payload c may send now: small until the peer has proved it holds the keys. */
static size_t ef__conn_max_payload(const ef_loop *loop, const ef__conn *c) {
    const ef_loop_config *cfg = &loop->cfg;
    if (c->trusted || !cfg->preauth_payload || cfg->preauth_payload > cfg->max_payload)
        return cfg->max_payload;
    return cfg->preauth_payload;
}

/* One frame at buf: parsed, and on a sealed connection opened (decrypted in place). */
static ptrdiff_t ef__conn_next_frame(ef_loop *loop, ef__conn *c, uint8_t *buf, size_t len,
                                     ef_frame *frame) {
    size_t limit = ef__conn_max_payload(loop, c);
    if (!c->rx)
        return ef_frame_parse(buf, len, limit, frame);
    const uint8_t *tag;
    ptrdiff_t r = ef_frame_parse_sealed(buf, len, limit, frame, &tag);
    if (r < 0)
        return r;
    uint8_t *payload = buf + EF_FRAME_HEADER_SIZE; /* the loop's own buffer: writable */
    ef__seal_begin(c->rx, buf);
    ef__seal_update(c->rx, payload, payload, frame->payload.len);
    if (ef__seal_verify(c->rx, tag) < 0)
        return EF_EFRAMEAUTH;
    c->trusted = true;
    return r;
}

static void ef__conn_parse(ef_loop *loop, ef__conn *c) {
    const ef_loop_config *cfg = &loop->cfg;
    size_t off = 0;
    bool outer = loop->batching;
    loop->batching = true;
    while (off < c->rlen && c->state == EF__OPEN && !c->paused && !c->closing) {
        ef_frame frame;
        /* c->rx is read for every frame: an on_frame that seals the connection changes how the
         * next frame in this same buffer is read. */
        ptrdiff_t r = ef__conn_next_frame(loop, c, c->rbuf + off, c->rlen - off, &frame);
        if (r == EF_ENEEDMORE)
            break;
        if (r < 0) {
            loop->batching = outer;
            ef__conn_kill(loop, c, (int)r, 0);
            if (!outer)
                ef__flush_dirty(loop);
            return;
        }
        off += (size_t)r;
        if ((size_t)r > cfg->read_buffer)
            c->small_run = 0;
        else if (c->small_run < EF__SHRINK_AFTER_SMALL)
            c->small_run++;
        if (cfg->on_frame)
            cfg->on_frame(loop, cfg->user, c->obj.id, &frame);
    }
    loop->batching = outer;
    if (!outer)
        ef__flush_dirty(loop);
    if (c->state == EF__DEAD || off == 0)
        return;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    /* A buffer grown for big frames is given back once what is left fits the normal size and
     * the last EF__SHRINK_AFTER_SMALL frames were small, rather than kept at the largest size the
     * peer ever sent. While big frames keep coming it stays: giving the memory back and growing
     * it again for every frame cost a worker fresh, zeroed pages for each parcel (5% of its CPU
     * on 4 MiB parcels) — also when the next parcel had not arrived yet as this one was parsed,
     * or a heartbeat came between two. It is kept too when what is left already starts a big
     * frame; that length is read unchecked: it only decides whether to keep memory, and the
     * frame is checked when it is parsed. A shrinking realloc that fails leaves the larger
     * buffer, which still works. */
    bool next_is_big = c->rlen >= EF_FRAME_HEADER_SIZE &&
                       EF_FRAME_HEADER_SIZE + (size_t)ef__load32(c->rbuf + EF__FRAME_LEN_OFFSET) >
                           cfg->read_buffer;
    if (c->rcap > cfg->read_buffer && c->rlen <= cfg->read_buffer && !next_is_big &&
        c->small_run >= EF__SHRINK_AFTER_SMALL) {
        uint8_t *small = realloc(c->rbuf, cfg->read_buffer);
        if (small) {
            c->rbuf = small;
            c->rcap = cfg->read_buffer;
        }
    }
}

void ef__conn_resume_parse(ef_loop *loop, ef__conn *c) {
    if (c->state == EF__OPEN && c->rlen)
        ef__conn_parse(loop, c);
}

/* Slow path: the buffer is full and holds one incomplete frame at its start. The parser has seen
 * its whole header (the buffer is at least two headers long) and refused a length over
 * max_payload, so the length can be trusted. */
static int ef__conn_grow_rbuf(ef_loop *loop, ef__conn *c) {
    size_t tag = c->rx ? EF_SESSION_TAG_SIZE : 0;
    size_t need = EF_FRAME_HEADER_SIZE + (size_t)ef__load32(c->rbuf + EF__FRAME_LEN_OFFSET) + tag;
    size_t limit = ef__conn_max_payload(loop, c) + EF_FRAME_HEADER_SIZE + tag;
    if (need <= c->rcap || need > limit) {
        ef__conn_kill(loop, c, EF_ETOOLONG, 0);
        return EF_ETOOLONG;
    }
    /* Straight to the frame's size (its header is checked), with room for the next frame's
     * start: one realloc per big frame, which the buffer gives back once it is parsed. */
    size_t cap = need + loop->cfg.read_buffer;
    uint8_t *rbuf = realloc(c->rbuf, cap);
    if (!rbuf) {
        ef__conn_kill(loop, c, EF_ENOMEM, 0);
        return EF_ENOMEM;
    }
    c->rbuf = rbuf;
    c->rcap = cap;
    return EF_OK;
}

static void ef__conn_read(ef_loop *loop, ef__conn *c) {
    for (int round = 0; round < EF__READS_PER_EVENT; round++) {
        if (c->state != EF__OPEN || c->paused || c->closing)
            return;
        if (c->rlen == c->rcap) {
            /* Whole frames may wait here from before a pause: deliver them first; grow only
             * for a frame that does not fit. */
            ef__conn_parse(loop, c);
            if (c->state != EF__OPEN || c->paused || c->closing)
                return;
            if (c->rlen == c->rcap && ef__conn_grow_rbuf(loop, c) < 0)
                return;
        }
        size_t room = c->rcap - c->rlen;
        ssize_t n = recv(c->obj.fd, c->rbuf + c->rlen, room, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            ef__conn_parse(loop, c);
            if ((size_t)n < room)
                return; /* drained, most likely: epoll says when there is more */
            continue;
        }
        if (n == 0) {
            /* Only a partial frame can be left here: complete ones were delivered. */
            ef__conn_kill(loop, c, c->rlen ? EF_ECLOSED : EF_OK, 0);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            ef__conn_kill(loop, c, EF_ESYS, errno);
        return;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Send queue                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static int ef__ring_reserve(ef__conn *c, size_t n) {
    if (c->ring_cap - c->ring_used >= n)
        return EF_OK;
    size_t cap = c->ring_cap ? c->ring_cap : EF__RING_INITIAL;
    while (cap - c->ring_used < n) {
        if (cap > SIZE_MAX / 2)
            return EF_ENOMEM;
        cap *= 2;
    }
    uint8_t *ring = malloc(cap);
    if (!ring)
        return EF_ENOMEM;
    /* Runs in the ring record lengths only, never offsets, so straightening it is invisible. */
    size_t first = ef__min(c->ring_used, c->ring_cap - c->ring_head);
    if (first)
        memcpy(ring, c->ring + c->ring_head, first);
    if (c->ring_used > first)
        memcpy(ring + first, c->ring, c->ring_used - first);
    free(c->ring);
    c->ring = ring;
    c->ring_cap = cap;
    c->ring_head = 0;
    return EF_OK;
}

static int ef__segs_reserve(ef__conn *c, size_t n) {
    if (c->seg_cap - c->seg_count >= n)
        return EF_OK;
    size_t cap = c->seg_cap ? c->seg_cap : EF__SEGS_INITIAL;
    while (cap - c->seg_count < n)
        cap *= 2;
    ef__seg *segs = malloc(cap * sizeof *segs);
    if (!segs)
        return EF_ENOMEM;
    for (size_t i = 0; i < c->seg_count; i++)
        segs[i] = c->segs[(c->seg_head + i) % c->seg_cap];
    free(c->segs);
    c->segs = segs;
    c->seg_cap = cap;
    c->seg_head = 0;
    return EF_OK;
}

static void ef__segs_push(ef__conn *c, ef__seg seg) {
    c->segs[(c->seg_head + c->seg_count) % c->seg_cap] = seg;
    c->seg_count++;
    c->pending += seg.len;
}

/* Copy into the ring (space reserved), extending the last run when it is a ring run; with a
 * seal, the bytes are encrypted on the way in rather than copied. */
static void ef__ring_put_with(ef__conn *c, ef_seal *seal, const uint8_t *data, size_t n) {
    if (!n)
        return;
    size_t tail = (c->ring_head + c->ring_used) % c->ring_cap;
    size_t first = ef__min(n, c->ring_cap - tail);
    if (seal) {
        ef__seal_update(seal, data, c->ring + tail, first);
        ef__seal_update(seal, data + first, c->ring, n - first);
    } else {
        memcpy(c->ring + tail, data, first);
        memcpy(c->ring, data + first, n - first);
    }
    c->ring_used += n;
    if (c->seg_count) {
        ef__seg *last = &c->segs[(c->seg_head + c->seg_count - 1) % c->seg_cap];
        if (last->kind == EF__RUN_RING) {
            last->len += n;
            c->pending += n;
            return;
        }
    }
    ef__segs_push(c, (ef__seg){.kind = EF__RUN_RING, .len = n});
}

static void ef__ring_put(ef__conn *c, const uint8_t *data, size_t n) {
    ef__ring_put_with(c, NULL, data, n);
}

/* Gather the queue's front into iov, up to the first file run (written by sendfile, not
 * sendmsg). Returns the iovec count; *bytes gets their total, *file whether a file run is next. */
static int ef__conn_iov(const ef__conn *c, struct iovec *iov, size_t *bytes, bool *file) {
    int n = 0;
    size_t total = 0, rpos = c->ring_head;
    *file = false;
    for (size_t i = 0; i < c->seg_count && n <= EF__IOV_BATCH - 2; i++) {
        const ef__seg *s = &c->segs[(c->seg_head + i) % c->seg_cap];
        if (s->kind == EF__RUN_FILE) {
            *file = true;
            break;
        }
        size_t skip = i == 0 ? c->seg_off : 0, len = s->len - skip;
        if (s->kind == EF__RUN_REF) {
            iov[n].iov_base = (void *)(s->ref + skip); /* sendmsg only reads it */
            iov[n++].iov_len = len;
        } else {
            /* ring_head is already past the bytes written of the front run. */
            size_t first = ef__min(len, c->ring_cap - rpos);
            iov[n].iov_base = c->ring + rpos;
            iov[n++].iov_len = first;
            if (len > first) {
                iov[n].iov_base = c->ring;
                iov[n++].iov_len = len - first;
            }
            rpos = (rpos + len) % c->ring_cap;
        }
        total += len;
    }
    *bytes = total;
    return n;
}

/* Drop written bytes from the front; release finished zero-copy and file runs. */
static void ef__conn_consume(ef__conn *c, size_t written) {
    c->pending -= written;
    while (written) {
        ef__seg *s = &c->segs[c->seg_head];
        size_t take = ef__min(written, s->len - c->seg_off);
        if (s->kind == EF__RUN_RING) {
            c->ring_head = (c->ring_head + take) % c->ring_cap;
            c->ring_used -= take;
        }
        c->seg_off += take;
        written -= take;
        if (c->seg_off < s->len)
            break;
        ef__seg done = *s;
        c->seg_head = (c->seg_head + 1) % c->seg_cap;
        c->seg_count--;
        c->seg_off = 0;
        if (done.kind == EF__RUN_FILE && done.tagger)
            ef__tagger_release(c->tx, done.tagger);
        /* Popped first: release may send on this connection and reshape the queue. */
        if (done.kind != EF__RUN_RING && done.release)
            done.release(done.ctx);
    }
    if (!c->ring_used)
        c->ring_head = 0; /* keeps the next frames contiguous */
}

/* Slow path for a file run sendfile refused: pread a piece into the ring's free space (queued
 * ring bytes stay where they are) and sendmsg it. What the socket does not take is read again
 * next time, from the page cache. Returns as ef__conn_write_file. */
static ptrdiff_t ef__conn_copy_file(ef__conn *c, const ef__seg *s, off_t offset, size_t left,
                                    size_t *offered, int *err) {
    /* Twice the piece: the larger of the free space's two ends is then at least one piece. */
    if (ef__ring_reserve(c, 2 * EF__COPY_CHUNK) < 0)
        return EF_ENOMEM;
    size_t tail = (c->ring_head + c->ring_used) % c->ring_cap, room;
    uint8_t *buf;
    if (c->ring_used && tail < c->ring_head) { /* the queued bytes wrap: the gap is free */
        buf = c->ring + tail;
        room = c->ring_head - tail;
    } else if (c->ring_cap - tail >= c->ring_head) {
        buf = c->ring + tail;
        room = c->ring_cap - tail;
    } else {
        buf = c->ring;
        room = c->ring_head;
    }
    size_t want = ef__min(left, ef__min(room, EF__COPY_CHUNK));
    ssize_t r;
    while ((r = pread(s->fd, buf, want, offset)) < 0 && errno == EINTR) {
    }
    if (r <= 0) {
        *err = r == 0 ? EIO : errno; /* 0: the file is shorter than the frame said */
        return EF_ESYS;
    }
    struct iovec iov = {buf, (size_t)r};
    *offered = (size_t)r;
    ssize_t w;
    while ((w = ef__sendv(c->obj.fd, &iov, 1, (size_t)r < left ? MSG_MORE : 0)) < 0 &&
           errno == EINTR) {
    }
    if (w >= 0)
        return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    *err = errno;
    return EF_ESYS;
}

/* A sealed file run (MAC only): its bytes are read a piece at a time into the carry, fed to the
 * frame's tag there while the piece is in cache, and written from it; the tag goes out with the
 * last piece. Each byte is read from the file once: what the socket does not take waits in the
 * carry. (The tag needs the bytes in this process anyway, and sendmsg from a piece just read
 * costs both ends less than sendfile after a read for the tag: docs/benchmarks.md.) Returns as
 * ef__conn_write_file; *offered gets the bytes this call tried to write. */
static ptrdiff_t ef__conn_write_tagged(ef__conn *c, ef__seg *s, size_t *offered, int *err) {
    size_t payload = s->len - EF_SESSION_TAG_SIZE;
    if (c->carry_off == c->carry_len) {
        size_t done = c->seg_off; /* the carry is empty: all that was read is written */
        size_t want = ef__min(payload - done, EF__CARRY_SIZE);
        ssize_t r;
        while ((r = pread(s->fd, c->carry, want, (off_t)(s->offset + done))) < 0 && errno == EINTR) {
        }
        if (r <= 0) {
            *err = r == 0 ? EIO : errno; /* 0: the file is shorter than the frame said */
            return EF_ESYS;
        }
        ef__tagger_update(s->tagger, c->carry, (size_t)r);
        c->carry_off = 0;
        c->carry_len = (size_t)r;
        if (done + (size_t)r == payload) {
            if (ef__tagger_finish(s->tagger, c->carry + r) != EF_OK) {
                *err = EPROTO;
                return EF_ESYS;
            }
            c->carry_len += EF_SESSION_TAG_SIZE;
        }
    }
    struct iovec iov = {c->carry + c->carry_off, c->carry_len - c->carry_off};
    *offered = iov.iov_len;
    bool more = c->seg_off + iov.iov_len < s->len;
    ssize_t w;
    while ((w = ef__sendv(c->obj.fd, &iov, 1, more ? MSG_MORE : 0)) < 0 && errno == EINTR) {
    }
    if (w >= 0) {
        c->carry_off += (size_t)w;
        return w;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    *err = errno;
    return EF_ESYS;
}

/* Write some of the front run, a file run: sendfile moves it from the page cache to the socket
 * without passing through this process. Returns the bytes written (> 0); 0 when the socket is
 * full (the rest waits for EPOLLOUT, as for sendmsg); or EF_ESYS with *err (EIO when the file
 * ended before the run did) or EF_ENOMEM, after which the connection must die: half a frame is
 * on the wire. *offered gets the bytes the call tried to write (fewer written: the socket is
 * full). */
static ptrdiff_t ef__conn_write_file(ef__conn *c, ef__seg *s, size_t *offered, int *err) {
    if (s->tagger)
        return ef__conn_write_tagged(c, s, offered, err);
    size_t left = s->len - c->seg_off;
    *offered = left;
    /* sendfile and pread take the offset as given and never move the fd's own. */
    off_t offset = (off_t)(s->offset + c->seg_off);
    while (!s->copy) {
        ssize_t w = ef__sendfile(c->obj.fd, s->fd, &offset, left);
        if (w > 0)
            return w;
        if (w == 0) {
            /* The file ended before the run: no more bytes will come, so waiting would hang
             * and retrying would spin. */
            *err = EIO;
            return EF_ESYS;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINVAL && errno != ENOSYS) {
            *err = errno;
            return EF_ESYS;
        }
        /* EINVAL, ENOSYS: this file or socket does not support sendfile (no splice_read, say).
         * Not an error: the slow path copies, for the rest of this run; a true EINVAL comes
         * back from pread. */
        s->copy = true;
    }
    return ef__conn_copy_file(c, s, offset, left, offered, err);
}

/* Write as much of the queue as the socket takes, in order: sendmsg for ring and zero-copy runs,
 * sendfile for file runs. May kill the connection; runs releases. */
static void ef__conn_write(ef_loop *loop, ef__conn *c) {
    while (c->state == EF__OPEN && c->seg_count) {
        ef__seg *front = &c->segs[c->seg_head];
        size_t want;
        ssize_t w;
        if (front->kind == EF__RUN_FILE) {
            int err = 0;
            ptrdiff_t r = ef__conn_write_file(c, front, &want, &err);
            if (r < 0) {
                ef__conn_kill(loop, c, (int)r, err);
                return;
            }
            if (r == 0)
                break;
            w = r;
        } else {
            struct iovec iov[EF__IOV_BATCH];
            bool file;
            int n = ef__conn_iov(c, iov, &want, &file);
            /* MSG_MORE before a file run: its header and first bytes can share a packet. */
            w = ef__sendv(c->obj.fd, iov, n, file ? MSG_MORE : 0);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                ef__conn_kill(loop, c, EF_ESYS, errno);
                return;
            }
        }
        ef__conn_consume(c, (size_t)w);
        if ((size_t)w < want)
            break; /* the socket is full */
    }
}

/* After a write: finish a flushing close whose queue is empty, else ask epoll for what is left. */
static void ef__conn_settle(ef_loop *loop, ef__conn *c) {
    if (c->closing && !c->seg_count) {
        ef__conn_finish_close(loop, c);
        return;
    }
    ef__conn_update(loop, c);
}

static void ef__conn_flush(ef_loop *loop, ef__conn *c) {
    ef__conn_write(loop, c);
    if (c->state != EF__OPEN)
        return;
    if (c->over_high && c->pending < loop->cfg.send_low_water) {
        c->over_high = false;
        if (!c->closing && loop->cfg.on_drain) {
            loop->cfg.on_drain(loop, loop->cfg.user, c->obj.id);
            if (c->state != EF__OPEN)
                return;
        }
    }
    ef__conn_settle(loop, c);
}

/* Remember a connection written to during a batch. Returns false when the list cannot grow. */
static bool ef__mark_dirty(ef_loop *loop, ef__conn *c) {
    if (c->dirty)
        return true;
    if (loop->ndirty == loop->dirty_cap) {
        size_t cap = loop->dirty_cap ? loop->dirty_cap * 2 : 16;
        uint64_t *grown = realloc(loop->dirty, cap * sizeof *grown); /* slow path: grows rarely */
        if (!grown)
            return false;
        loop->dirty = grown;
        loop->dirty_cap = cap;
    }
    loop->dirty[loop->ndirty++] = c->obj.id;
    c->dirty = true;
    return true;
}

void ef__flush_dirty(ef_loop *loop) {
    /* Flushing may run callbacks (on_drain, releases) that send again: they write at once, since
     * no batch is running; the list is taken whole first so such sends cannot disturb it. */
    size_t n = loop->ndirty;
    for (size_t i = 0; i < n; i++) {
        ef__conn *c = (ef__conn *)ef__obj_find(loop, loop->dirty[i], EF__CONN);
        if (!c)
            continue;
        c->dirty = false;
        if (c->state == EF__OPEN && c->seg_count)
            ef__conn_flush(loop, c);
    }
    if (loop->ndirty > n) /* appended during the flush: cannot happen outside a batch */
        memmove(loop->dirty, loop->dirty + n, (loop->ndirty - n) * sizeof *loop->dirty);
    loop->ndirty -= n;
}

/* A frame whose payload is a file run (arguments checked, header encoded): the header goes into
 * the ring and the run after it, like a zero-copy frame; now (the queue was empty, no batch) it
 * is written at once, as far as the socket takes it. Only ENOMEM can fail, before anything is
 * queued; once queued, the release is owed even if the write below kills the connection. */
static int ef__send_file(ef_loop *loop, ef__conn *c, const uint8_t *header, const ef_send *send,
                         bool now) {
    if (ef__ring_reserve(c, EF_FRAME_HEADER_SIZE) < 0 || ef__segs_reserve(c, 2) < 0)
        return EF_ENOMEM;
    ef__ring_put(c, header, EF_FRAME_HEADER_SIZE);
    if (send->len)
        ef__segs_push(c, (ef__seg){.kind = EF__RUN_FILE,
                                   .fd = send->file_fd,
                                   .offset = send->file_offset,
                                   .len = send->len,
                                   .release = send->release,
                                   .ctx = send->ctx});
    /* Not ef__conn_flush: its on_drain must not run inside a send. */
    if (now)
        ef__conn_write(loop, c);
    if (c->pending >= loop->cfg.send_high_water)
        c->over_high = true;
    if (c->state == EF__OPEN)
        ef__conn_settle(loop, c);
    if (!send->len && send->release)
        send->release(send->ctx); /* an empty payload: nothing to keep */
    return EF_OK;
}

/* Undo the last n bytes ef__ring_put queued (all in ring runs): a sealed frame that could not be
 * finished leaves nothing behind. */
static void ef__ring_unput(ef__conn *c, size_t n) {
    while (n) {
        ef__seg *last = &c->segs[(c->seg_head + c->seg_count - 1) % c->seg_cap];
        size_t take = ef__min(n, last->len);
        last->len -= take;
        c->pending -= take;
        c->ring_used -= take;
        n -= take;
        if (!last->len)
            c->seg_count--;
    }
    if (!c->ring_used)
        c->ring_head = 0;
}

/* 256 KiB: few preads per parcel (each costs a syscall and page-cache lookups), and the piece
 * is still in L2 when the tag (or the cipher) reads it back. */
#define EF__SCRATCH_SIZE (256u * 1024u)

/* Encrypt len bytes of fd at offset into the ring (space reserved), a scratch piece at a time.
 * (MAC only, a file payload is read when written instead: ef__conn_write_tagged.) Returns
 * EF_OK, or EF_ESYS with *err (EIO: the file ended before the frame did). */
static int ef__seal_file(ef_loop *loop, ef__conn *c, ef_seal *seal, int fd, uint64_t offset,
                         size_t len, int *err) {
    while (len) {
        ssize_t r = pread(fd, loop->scratch, ef__min(len, EF__SCRATCH_SIZE), (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *err = r == 0 ? EIO : errno;
            return EF_ESYS;
        }
        ef__ring_put_with(c, seal, loop->scratch, (size_t)r);
        offset += (uint64_t)r;
        len -= (size_t)r;
    }
    return EF_OK;
}

/* A frame is queued: note the high water, and write at once when now. Returns EF_OK. */
static int ef__send_queued(ef_loop *loop, ef__conn *c, bool now) {
    if (c->pending >= loop->cfg.send_high_water)
        c->over_high = true;
    if (now)
        ef__conn_write(loop, c);
    if (c->state == EF__OPEN)
        ef__conn_settle(loop, c);
    return EF_OK;
}

/* A send on a sealed connection (arguments checked, room under the high water). The header
 * always goes into the ring, and the tag too but for a file payload sent MAC only: that one is
 * a tagged file run (its bytes read, fed to the tag and written when their turn comes, the tag
 * after them). Otherwise, MAC only, the payload is queued as it would be unsealed (copied,
 * referenced, or left in its file when the caller lent its bytes) once its tag is computed —
 * from original instead when a tampered send gives one. Encrypted, it is encrypted into the ring
 * from memory or the file, and a reference or file is released at once. now: write at once
 * (queue empty, no batch). */
static int ef__send_sealed(ef_loop *loop, ef__conn *c, const ef_send *send, bool ref, bool file,
                           const uint8_t *original, bool now) {
    ef_seal *seal = c->tx;
    bool encrypt = ef__seal_encrypts(seal);
    size_t len = send->len;
    uint8_t header[EF_FRAME_HEADER_SIZE], tag[EF_SESSION_TAG_SIZE];
    int rc = ef_frame_encode_sealed(header, send->type, send->flags, send->codec, send->aux,
                                    send->id, len);
    if (rc < 0)
        return rc;
    bool copied = encrypt || (!ref && !file);
    if (ef__ring_reserve(c, EF_FRAME_HEADER_SIZE + EF_SESSION_TAG_SIZE + (copied ? len : 0)) < 0 ||
        ef__segs_reserve(c, 3) < 0)
        return EF_ENOMEM;
    /* A file payload's bytes are read back for the tag unless the caller lent them: MAC only,
     * when its turn comes to be written (ef__conn_write_tagged), so the seal moves on now. */
    bool from_file = file && !send->payload;
    if (from_file && !encrypt && len) {
        if (!c->carry && !(c->carry = malloc(EF__CARRY_SIZE + EF_SESSION_TAG_SIZE)))
            return EF_ENOMEM;
        ef__tagger *tagger = ef__tagger_start(seal, header);
        if (!tagger)
            return EF_ENOMEM;
        ef__ring_put(c, header, EF_FRAME_HEADER_SIZE);
        ef__segs_push(c, (ef__seg){.kind = EF__RUN_FILE,
                                   .fd = send->file_fd,
                                   .offset = send->file_offset,
                                   .len = len + EF_SESSION_TAG_SIZE,
                                   .tagger = tagger,
                                   .release = send->release,
                                   .ctx = send->ctx});
        return ef__send_queued(loop, c, now);
    }
    if (from_file && encrypt && !loop->scratch && !(loop->scratch = malloc(EF__SCRATCH_SIZE)))
        return EF_ENOMEM;
    uint8_t *tampered = NULL; /* chaos only: the ciphertext of original with sent's changes */
    if (encrypt && original && len) {
        if (!(tampered = malloc(len)))
            return EF_ENOMEM;
    }

    int err = 0;
    size_t ring_before = c->ring_used;
    ef__seal_begin(seal, header);
    if (!encrypt) {
        if (!from_file) /* from a file, here, the payload is empty */
            ef__seal_update(seal, original ? original : send->payload, NULL, len);
        if (rc == EF_OK)
            rc = ef__seal_finish(seal, tag);
        if (rc == EF_OK) {
            ef__ring_put(c, header, EF_FRAME_HEADER_SIZE);
            if (file && len)
                ef__segs_push(c, (ef__seg){.kind = EF__RUN_FILE,
                                           .fd = send->file_fd,
                                           .offset = send->file_offset,
                                           .len = len,
                                           .release = send->release,
                                           .ctx = send->ctx});
            else if (ref && len)
                ef__segs_push(c, (ef__seg){.kind = EF__RUN_REF,
                                           .ref = send->payload,
                                           .len = len,
                                           .release = send->release,
                                           .ctx = send->ctx});
            else
                ef__ring_put(c, send->payload, len);
        }
    } else {
        ef__ring_put(c, header, EF_FRAME_HEADER_SIZE);
        if (from_file) {
            rc = ef__seal_file(loop, c, seal, send->file_fd, send->file_offset, len, &err);
        } else if (tampered) {
            ef__seal_update(seal, original, tampered, len);
            for (size_t i = 0; i < len; i++) /* CTR mode: a plaintext change is a ciphertext one */
                tampered[i] ^= (uint8_t)(original[i] ^ send->payload[i]);
            ef__ring_put(c, tampered, len);
        } else {
            ef__ring_put_with(c, seal, send->payload, len);
        }
        if (rc == EF_OK)
            rc = ef__seal_finish(seal, tag);
    }
    free(tampered);
    if (rc < 0) {
        if (encrypt) /* the header and what was encrypted of the payload are the newest bytes */
            ef__ring_unput(c, c->ring_used - ring_before);
        if (rc == EF_ESYS && from_file) {
            /* As unsealed: a file that ends early closes the connection, and the release the
             * caller handed over still runs exactly once. */
            ef__conn_kill(loop, c, EF_ESYS, err);
            if (send->release)
                send->release(send->ctx);
            return EF_OK;
        }
        return rc;
    }
    ef__ring_put(c, tag, EF_SESSION_TAG_SIZE);
    ef__send_queued(loop, c, now);
    /* Encrypted, a reference or file was copied: its owner may have it back now. */
    if (send->release && (encrypt || !len) && (ref || file))
        send->release(send->ctx);
    return EF_OK;
}

/* Every send comes here; ref: reference the payload (zero copy) rather than copy it. original:
 * a tampered send's true payload (the tag or checksums describe it, not what is sent). */
static int ef__send(ef_loop *loop, uint64_t conn_id, const ef_send *send, bool ref,
                    const uint8_t *original) {
    bool file = (send->options & EF_SEND_FROM_FILE) != 0;
    const uint8_t *payload = send->payload;
    size_t len = send->len;
    void (*release)(void *ctx) = send->release;
    void *ctx = send->ctx;
    ef__conn *c = (ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    if (!c || c->closing)
        return EF_ECLOSED;
    if (c->pending >= loop->cfg.send_high_water)
        return EF_EBUSY;
    if (c->tx) {
        bool deferred = loop->batching && c->state == EF__OPEN && ef__mark_dirty(loop, c);
        return ef__send_sealed(loop, c, send, ref, file, original,
                               c->state == EF__OPEN && !c->seg_count && !deferred);
    }
    /* Unsealed, the loop never reads a file run's bytes, so it cannot checksum them: the
     * caller does. (Sealed, the tag covers the payload and no CRC is sent.) */
    if (file && !send->has_crc)
        return EF_EINVAL;
    uint8_t header[EF_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    /* A file payload is never read here (its CRC is known) nor written through iov[1]; the
     * header stands in for the pointer the encoder wants for a non-empty payload. */
    int n = ef__frame_encode(header, send->type, send->flags, send->codec, send->aux, send->id,
                             file ? header : payload, len,
                             send->has_crc ? &send->payload_crc : NULL, iov);
    if (n < 0)
        return n;

    size_t total = EF_FRAME_HEADER_SIZE + len, done = 0;
    /* In a batch, the frame waits for the batch's end, to leave with the others in one writev;
     * if it cannot be remembered (no memory for the list), it is written now as usual. */
    bool deferred = loop->batching && c->state == EF__OPEN && ef__mark_dirty(loop, c);
    if (file)
        return ef__send_file(loop, c, header, send,
                             c->state == EF__OPEN && !c->seg_count && !deferred);
    if (c->state == EF__OPEN && !c->seg_count && !deferred) {
        ssize_t w = ef__sendv(c->obj.fd, iov, n, 0);
        if (w >= 0) {
            done = (size_t)w;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            ef__conn_kill(loop, c, EF_ESYS, errno);
            return EF_ECLOSED;
        }
        if (done == total) {
            if (ref && release)
                release(ctx);
            return EF_OK;
        }
    }

    size_t header_done = ef__min(done, EF_FRAME_HEADER_SIZE);
    size_t payload_done = done - header_done;
    size_t payload_left = len - payload_done;
    size_t ring_need = EF_FRAME_HEADER_SIZE - header_done + (ref ? 0 : payload_left);
    if (ef__ring_reserve(c, ring_need) < 0 || ef__segs_reserve(c, 2) < 0) {
        if (done) /* half a frame is on the wire: the stream cannot go on */
            ef__conn_kill(loop, c, EF_ENOMEM, 0);
        return EF_ENOMEM;
    }
    ef__ring_put(c, header + header_done, EF_FRAME_HEADER_SIZE - header_done);
    if (!ref)
        ef__ring_put(c, payload + payload_done, payload_left);
    else if (payload_left)
        ef__segs_push(c, (ef__seg){.kind = EF__RUN_REF,
                                   .ref = payload + payload_done,
                                   .len = payload_left,
                                   .release = release,
                                   .ctx = ctx});
    if (c->pending >= loop->cfg.send_high_water)
        c->over_high = true;
    if (c->state == EF__OPEN)
        ef__conn_update(loop, c);
    if (ref && !payload_left && release)
        release(ctx); /* an empty payload: nothing to keep */
    return EF_OK;
}

EF_API int ef_loop_send_with(ef_loop *loop, uint64_t conn_id, const ef_send *send) {
    /* Unknown option bits are refused, so a later option cannot be silently ignored here. */
    if (!send || (send->options & ~(unsigned)EF_SEND_FROM_FILE))
        return EF_EINVAL;
    if (send->options & EF_SEND_FROM_FILE) {
        /* The range must fit an off_t. The CRC is checked in ef__send, which knows whether the
         * connection is sealed. */
        if (send->file_fd < 0 || send->file_offset > (uint64_t)INT64_MAX ||
            (uint64_t)send->len > (uint64_t)INT64_MAX - send->file_offset)
            return EF_EINVAL;
        return ef__send(loop, conn_id, send, true, NULL);
    }
    return ef__send(loop, conn_id, send, send->release != NULL, NULL);
}

EF_API int ef_loop_send(ef_loop *loop, uint64_t conn_id, uint8_t type, uint8_t flags, uint8_t codec,
                        uint32_t aux, uint64_t id, const uint8_t *payload, size_t len) {
    ef_send s = {.type = type,
                 .flags = flags,
                 .codec = codec,
                 .aux = aux,
                 .id = id,
                 .payload = payload,
                 .len = len};
    return ef__send(loop, conn_id, &s, false, NULL);
}

#ifdef EF_TESTING
/* A frame corrupted in flight is a frame whose known CRC is that of other bytes. */
EF_API int ef_loop_send_tampered(ef_loop *loop, uint64_t conn_id, uint8_t type, uint8_t flags,
                                 uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                                 const uint8_t *sent, size_t len) {
    if ((!sent || !payload) && len)
        return EF_EINVAL;
    ef_send s = {.type = type,
                 .flags = flags,
                 .codec = codec,
                 .aux = aux,
                 .id = id,
                 .payload = sent,
                 .len = len,
                 .has_crc = 1,
                 .payload_crc = ef_crc32c(0, payload, len)};
    return ef__send(loop, conn_id, &s, false, payload);
}
#endif /* EF_TESTING */

/* Kept apart from ef_loop_send_with: a NULL release here still means zero copy (the caller
 * keeps the payload alive by other means), where ef_send reads NULL as "copy". */
EF_API int ef_loop_send_ref(ef_loop *loop, uint64_t conn_id, uint8_t type, uint8_t flags,
                            uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                            size_t len, void (*release)(void *ctx), void *ctx) {
    ef_send s = {.type = type,
                 .flags = flags,
                 .codec = codec,
                 .aux = aux,
                 .id = id,
                 .payload = payload,
                 .len = len,
                 .release = release,
                 .ctx = ctx};
    return ef__send(loop, conn_id, &s, true, NULL);
}

EF_API int ef_loop_seal(ef_loop *loop, uint64_t conn_id, const ef_session_keys *keys, uint8_t role,
                        int encrypt) {
    ef__conn *c = (ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    if (!c)
        return EF_ECLOSED;
    if (!keys || (role != 'M' && role != 'W') || c->tx)
        return EF_EINVAL;
    bool master = role == 'M';
    unsigned mode = encrypt ? EF_SEAL_ENCRYPT : 0;
    ef_seal *tx =
        ef_seal_create(master ? keys->master_to_worker : keys->worker_to_master, role, mode);
    ef_seal *rx = ef_seal_create(master ? keys->worker_to_master : keys->master_to_worker,
                                 master ? 'W' : 'M', mode | EF_SEAL_OPENER);
    if (!tx || !rx) {
        ef_seal_free(tx);
        ef_seal_free(rx);
        return EF_ENOMEM;
    }
    c->tx = tx;
    c->rx = rx;
    return EF_OK;
}

EF_API int64_t ef_loop_pending(const ef_loop *loop, uint64_t conn_id) {
    const ef__conn *c = (const ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    return c ? (int64_t)c->pending : EF_ECLOSED;
}

EF_API int ef_loop_delivery_rate(const ef_loop *loop, uint64_t conn_id, uint64_t *bytes_per_second,
                                 int *app_limited) {
    if (!bytes_per_second || !app_limited)
        return EF_EINVAL;
    const ef__conn *c = (const ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    if (!c)
        return EF_ECLOSED;
    return ef__tcp_delivery_rate(c->obj.fd, bytes_per_second, app_limited);
}

/* ------------------------------------------------------------------------------------------ */
/* Connection events and control                                                              */
/* ------------------------------------------------------------------------------------------ */

static void ef__conn_connected(ef_loop *loop, ef__conn *c) {
    int err = ef__so_error(c->obj.fd);
    if (err) {
        ef__conn_kill(loop, c, EF_ESYS, err);
        return;
    }
    c->state = EF__OPEN;
    if (loop->cfg.on_connect) {
        loop->cfg.on_connect(loop, loop->cfg.user, c->obj.id, EF_OK);
        if (c->state != EF__OPEN)
            return;
    }
    if (c->seg_count)
        ef__conn_flush(loop, c); /* frames sent while connecting */
    else
        ef__conn_update(loop, c);
}

void ef__conn_event(ef_loop *loop, ef__conn *c, uint32_t events) {
    if (c->state == EF__CONNECTING) {
        ef__conn_connected(loop, c);
        return;
    }
    const uint32_t trouble = EPOLLERR | EPOLLHUP;
    bool reading = !c->paused && !c->closing;
    if (reading && (events & (EPOLLIN | trouble)))
        ef__conn_read(loop, c);
    if (c->state == EF__OPEN && c->seg_count && (events & (EPOLLOUT | trouble)))
        ef__conn_flush(loop, c); /* a write error surfaces here */
    if (c->state != EF__OPEN || reading || c->seg_count || !(events & trouble))
        return;
    /* Not reading, nothing to write, and epoll reports a hang-up or error, which it does whatever
     * the interest: left alone, level-triggering would spin on it. */
    int err = ef__so_error(c->obj.fd);
    if (err || (events & EPOLLERR)) {
        ef__conn_kill(loop, c, EF_ESYS, err ? err : EIO);
        return;
    }
    /* A clean hang-up while paused: input may still wait unread, so sleep until the resume. */
    ef__obj_unwatch(loop, &c->obj);
    c->parked = true;
}

EF_API int ef_loop_close(ef_loop *loop, uint64_t conn_id, int flush) {
    ef__conn *c = (ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    if (!c)
        return EF_ECLOSED;
    if (flush && c->seg_count) {
        c->closing = true;
        if (c->state == EF__OPEN)
            ef__conn_update(loop, c);
        return EF_OK;
    }
    if (flush && c->state == EF__OPEN && !c->parked)
        ef__conn_finish_close(loop, c);
    else
        ef__conn_kill(loop, c, EF_OK, 0);
    return EF_OK;
}

EF_API int ef_loop_pause(ef_loop *loop, uint64_t conn_id, int paused) {
    ef__conn *c = (ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    if (!c || c->closing)
        return EF_ECLOSED;
    bool p = paused != 0;
    if (c->paused == p)
        return EF_OK;
    if (!p && c->rlen && c->state == EF__OPEN) {
        /* Frames already buffered get no epoll event: the loop parses them on its next turn. */
        if (loop->nresumed == loop->resumed_cap) {
            size_t cap = loop->resumed_cap ? loop->resumed_cap * 2 : 16;
            uint64_t *ids = realloc(loop->resumed, cap * sizeof *ids);
            if (!ids)
                return EF_ENOMEM;
            loop->resumed = ids;
            loop->resumed_cap = cap;
        }
        loop->resumed[loop->nresumed++] = c->obj.id;
    }
    c->paused = p;
    if (!p)
        c->parked = false;
    if (c->state == EF__OPEN)
        ef__conn_update(loop, c);
    return EF_OK;
}

EF_API ptrdiff_t ef_loop_peer(const ef_loop *loop, uint64_t conn_id, char *buf, size_t cap) {
    const ef__conn *c = (const ef__conn *)ef__obj_find(loop, conn_id, EF__CONN);
    if (!c)
        return EF_ECLOSED;
    if (!buf)
        return EF_EINVAL;
    char host[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 16];
    int len;
    if (c->peer.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&c->peer;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        len = snprintf(text, sizeof text, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (c->peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&c->peer;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        len = snprintf(text, sizeof text, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        return EF_EINVAL;
    }
    if (len < 0 || (size_t)len >= cap)
        return EF_ESPACE;
    memcpy(buf, text, (size_t)len + 1);
    return len;
}

/* ------------------------------------------------------------------------------------------ */
/* Listeners and outgoing connections                                                         */
/* ------------------------------------------------------------------------------------------ */

EF_API int ef_loop_listen(ef_loop *loop, const char *host, uint16_t port, uint64_t *listener_id,
                          uint16_t *bound_port) {
    if (!loop || !listener_id)
        return EF_EINVAL;
    struct addrinfo *ai;
    int rc = ef__resolve(host, port, true, &ai);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        rc = ef__sys(loop, errno);
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        rc = ef__sys(loop, errno);
        close(fd);
        return rc;
    }
    ef__obj *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return EF_ENOMEM;
    }
    l->fd = fd;
    rc = ef__obj_attach(loop, l, EF__LISTENER);
    if (rc == EF_OK) {
        rc = ef__obj_watch(loop, l, EPOLLIN);
        if (rc < 0)
            ef__obj_detach(loop, l);
    }
    if (rc < 0) {
        close(fd);
        free(l);
        return rc;
    }
    *listener_id = l->id;
    if (bound_port)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return EF_OK;
}

void ef__listener_destroy(ef_loop *loop, ef__obj *l) {
    ef__obj_unwatch(loop, l);
    close(l->fd);
    ef__obj_detach(loop, l);
    free(l);
}

EF_API int ef_loop_unlisten(ef_loop *loop, uint64_t listener_id) {
    ef__obj *l = ef__obj_find(loop, listener_id, EF__LISTENER);
    if (!l)
        return EF_ECLOSED;
    ef__listener_destroy(loop, l);
    return EF_OK;
}

void ef__listener_event(ef_loop *loop, ef__obj *l) {
    const uint64_t listener_id = l->id;
    for (int i = 0; i < EF__ACCEPTS_PER_EVENT; i++) {
        /* on_accept may have closed the listener. */
        l = ef__obj_find(loop, listener_id, EF__LISTENER);
        if (!l)
            return;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* EAGAIN: done. EMFILE and friends: the peer waits in the backlog and epoll asks
             * again; nothing better to do without an fd to spare. */
            return;
        }
        ef__nodelay(fd);
        int rc;
        ef__conn *c = ef__conn_new(loop, fd, EF__OPEN, &ss, sl, &rc);
        if (!c) {
            close(fd);
            continue;
        }
        if (ef__obj_watch(loop, &c->obj, EPOLLIN) < 0) {
            /* Never announced, so it leaves without callbacks. */
            ef__obj_detach(loop, &c->obj);
            close(fd);
            ef__conn_destroy(c);
            continue;
        }
        if (loop->cfg.on_accept)
            loop->cfg.on_accept(loop, loop->cfg.user, listener_id, c->obj.id);
    }
}

EF_API int ef_loop_connect(ef_loop *loop, const char *host, uint16_t port, uint64_t *conn_id) {
    if (!loop || !host || !conn_id)
        return EF_EINVAL;
    struct addrinfo *ai;
    int rc = ef__resolve(host, port, false, &ai);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        rc = ef__sys(loop, errno);
        freeaddrinfo(ai);
        return rc;
    }
    ef__nodelay(fd);
    int err = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? errno : 0;
    ef__conn *c = ef__conn_new(loop, fd, EF__CONNECTING, ai->ai_addr, ai->ai_addrlen, &rc);
    freeaddrinfo(ai);
    if (!c) {
        close(fd);
        return rc;
    }
    *conn_id = c->obj.id;
    /* Even an immediate failure is reported through on_connect, from the loop, so callers have
     * one path for every outcome. EINTR: the connect goes on in the background. */
    if (err && err != EINPROGRESS && err != EINTR)
        ef__conn_kill(loop, c, EF_ESYS, err);
    else
        ef__conn_update(loop, c); /* EPOLLOUT: even a connect done at once reports there */
    return EF_OK;
}
