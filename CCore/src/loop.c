/* The event loop proper: epoll, the id table, timerfd timers, and the eventfd-woken post queue.
 * Sockets and connections live in net.c.
 *
 * Modelled on redis ae.c: level-triggered epoll, a fixed event array sized up front, handlers
 * called per ready fd. Unlike ae, objects are named by ids carried in epoll's data, not by
 * pointers, so an event for an object closed earlier in the same batch finds nothing and is
 * dropped; and closed connections are freed only after the handler that closed them returns,
 * so a handler never holds a dangling pointer. */
#include "loop_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define EF__SLOTS_INITIAL 64u
#define EF__POSTS_INITIAL 64u

typedef struct ef__timer {
    ef__obj obj;
    bool repeat;
} ef__timer;

int ef__sys(ef_loop *loop, int err) {
    loop->last_errno = err;
    return EF_ESYS;
}

/* ------------------------------------------------------------------------------------------ */
/* Id table                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static int ef__slots_grow(ef_loop *loop) {
    uint32_t cap = loop->slot_cap ? loop->slot_cap * 2 : EF__SLOTS_INITIAL;
    if (cap > (UINT32_C(1) << EF__SLOT_BITS))
        return EF_ENOMEM;
    ef__obj **slots = realloc(loop->slots, cap * sizeof *slots);
    if (!slots)
        return EF_ENOMEM;
    loop->slots = slots;
    uint32_t *free_slots = realloc(loop->free_slots, cap * sizeof *free_slots);
    if (!free_slots)
        return EF_ENOMEM; /* the larger slots array is kept; slot_cap is unchanged */
    loop->free_slots = free_slots;
    memset(slots + loop->slot_cap, 0, (cap - loop->slot_cap) * sizeof *slots);
    loop->slot_cap = cap;
    return EF_OK;
}

int ef__obj_attach(ef_loop *loop, ef__obj *obj, uint8_t kind) {
    uint32_t slot;
    if (loop->nfree) {
        slot = loop->free_slots[--loop->nfree];
    } else {
        if (loop->slots_used == loop->slot_cap) {
            int rc = ef__slots_grow(loop);
            if (rc < 0)
                return rc;
        }
        slot = loop->slots_used++;
    }
    obj->id = (++loop->seq << EF__SLOT_BITS) | slot;
    obj->kind = kind;
    loop->slots[slot] = obj;
    return EF_OK;
}

void ef__obj_detach(ef_loop *loop, ef__obj *obj) {
    uint32_t slot = (uint32_t)(obj->id & EF__SLOT_MASK);
    if (slot < loop->slots_used && loop->slots[slot] == obj) {
        loop->slots[slot] = NULL;
        loop->free_slots[loop->nfree++] = slot;
    }
}

ef__obj *ef__obj_find(const ef_loop *loop, uint64_t id, uint8_t kind) {
    uint64_t slot = id & EF__SLOT_MASK;
    if (!loop || slot >= loop->slots_used)
        return NULL;
    ef__obj *obj = loop->slots[slot];
    if (!obj || obj->id != id || (kind && obj->kind != kind))
        return NULL;
    return obj;
}

int ef__obj_watch(ef_loop *loop, ef__obj *obj, uint32_t events) {
    if (obj->watched && obj->events == events)
        return EF_OK;
    struct epoll_event ev = {.events = events, .data.u64 = obj->id};
    int op = obj->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, obj->fd, &ev) < 0)
        return ef__sys(loop, errno);
    obj->watched = true;
    obj->events = events;
    return EF_OK;
}

void ef__obj_unwatch(ef_loop *loop, ef__obj *obj) {
    if (!obj->watched)
        return;
    /* The fd is about to close or to sleep; a failure here leaves nothing to undo. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, obj->fd, NULL);
    obj->watched = false;
    obj->events = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Create, free                                                                               */
/* ------------------------------------------------------------------------------------------ */

static ef_loop *ef__create_fail(ef_loop *loop, int *error, int code) {
    int saved = errno;
    if (loop) {
        if (loop->wakefd >= 0)
            close(loop->wakefd);
        if (loop->epfd >= 0)
            close(loop->epfd);
        free(loop->slots);
        free(loop->free_slots);
        free(loop);
    }
    if (error)
        *error = code;
    errno = saved;
    return NULL;
}

EF_API ef_loop *ef_loop_create(const ef_loop_config *config, int *error) {
    ef_loop_config cfg = {0};
    if (config)
        cfg = *config;
    if (cfg.max_payload == 0 || cfg.max_payload > UINT32_MAX)
        cfg.max_payload = cfg.max_payload ? UINT32_MAX : EF_FRAME_MAX_PAYLOAD_DEFAULT;
    if (cfg.send_high_water == 0)
        cfg.send_high_water = EF_LOOP_SEND_HIGH_WATER_DEFAULT;
    if (cfg.send_low_water == 0)
        cfg.send_low_water = cfg.send_high_water / 2 ? cfg.send_high_water / 2 : 1;
    if (cfg.send_low_water > cfg.send_high_water)
        return ef__create_fail(NULL, error, EF_EINVAL);
    if (cfg.read_buffer == 0)
        cfg.read_buffer = EF_LOOP_READ_BUFFER_DEFAULT;
    /* Growth reads the length of the frame at the buffer's start: the header must fit. */
    if (cfg.read_buffer < 2 * EF_FRAME_HEADER_SIZE)
        cfg.read_buffer = 2 * EF_FRAME_HEADER_SIZE;

    ef_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return ef__create_fail(NULL, error, EF_ENOMEM);
    loop->cfg = cfg;
    loop->epfd = -1;
    loop->wakefd = -1;
    atomic_init(&loop->stop, false);

    if (ef__slots_grow(loop) < 0)
        return ef__create_fail(loop, error, EF_ENOMEM);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return ef__create_fail(loop, error, EF_ESYS);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0)
        return ef__create_fail(loop, error, EF_ESYS);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EF__WAKE_ID};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
        return ef__create_fail(loop, error, EF_ESYS);
    if (pthread_mutex_init(&loop->post_lock, NULL) != 0)
        return ef__create_fail(loop, error, EF_ENOMEM);
    if (error)
        *error = EF_OK;
    return loop;
}

static void ef__timer_destroy(ef_loop *loop, ef__timer *t);
static bool ef__run_posts(ef_loop *loop);

EF_API void ef_loop_free(ef_loop *loop) {
    if (!loop)
        return;
    /* Posted work may own resources (a retained Swift object behind arg): running it is the only
     * way to hand them back, and the loop is still whole here. */
    while (ef__run_posts(loop)) {
    }
    for (uint32_t s = 0; s < loop->slots_used; s++) {
        ef__obj *obj = loop->slots[s];
        if (!obj)
            continue;
        switch (obj->kind) {
        case EF__CONN: ef__conn_kill(loop, (ef__conn *)obj, EF_ECLOSED, 0); break;
        case EF__LISTENER: ef__listener_destroy(loop, obj); break;
        case EF__TIMER: ef__timer_destroy(loop, (ef__timer *)obj); break;
        default: break;
        }
    }
    ef__dead_flush(loop, false);
    close(loop->wakefd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop->posts);
    free(loop->posts_spare);
    free(loop->dirty);
    free(loop->resumed);
    free(loop->scratch);
    free(loop->slots);
    free(loop->free_slots);
    free(loop);
}

EF_API int ef_loop_last_errno(const ef_loop *loop) { return loop ? loop->last_errno : 0; }

/* ------------------------------------------------------------------------------------------ */
/* Posts and wake-ups                                                                         */
/* ------------------------------------------------------------------------------------------ */

static void ef__wake(ef_loop *loop) {
    uint64_t one = 1;
    /* EAGAIN means the counter is already huge: the loop is woken anyway. */
    ssize_t n = write(loop->wakefd, &one, sizeof one);
    (void)n;
}

EF_API int ef_loop_post(ef_loop *loop, void (*fn)(ef_loop *loop, void *arg), void *arg) {
    if (!loop || !fn)
        return EF_EINVAL;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->nposts == loop->posts_cap) {
        size_t cap = loop->posts_cap ? loop->posts_cap * 2 : EF__POSTS_INITIAL;
        ef__post *posts = realloc(loop->posts, cap * sizeof *posts);
        if (!posts) {
            pthread_mutex_unlock(&loop->post_lock);
            return EF_ENOMEM;
        }
        loop->posts = posts;
        loop->posts_cap = cap;
    }
    loop->posts[loop->nposts++] = (ef__post){fn, arg};
    /* Only the first post of a batch wakes the loop: it drains the whole queue per wake-up, and
     * it reads the eventfd before taking the batch, so a later post is never missed. */
    bool wake = loop->nposts == 1;
    pthread_mutex_unlock(&loop->post_lock);
    if (wake)
        ef__wake(loop);
    return EF_OK;
}

/* Take the queued batch and run it without the lock. Returns whether anything ran. */
static bool ef__run_posts(ef_loop *loop) {
    pthread_mutex_lock(&loop->post_lock);
    ef__post *batch = loop->posts;
    size_t n = loop->nposts, cap = loop->posts_cap;
    loop->posts = loop->posts_spare;
    loop->posts_cap = loop->spare_cap;
    loop->nposts = 0;
    pthread_mutex_unlock(&loop->post_lock);

    bool outer = loop->batching;
    loop->batching = true;
    for (size_t i = 0; i < n; i++)
        batch[i].fn(loop, batch[i].arg);
    loop->batching = outer;
    if (!outer)
        ef__flush_dirty(loop);

    /* The loop thread alone touches the spare; swapping back keeps both capacities. */
    loop->posts_spare = batch;
    loop->spare_cap = cap;
    return n > 0;
}

static void ef__wake_event(ef_loop *loop) {
    uint64_t count;
    ssize_t r = read(loop->wakefd, &count, sizeof count);
    (void)r;
    ef__run_posts(loop);
}

EF_API void ef_loop_stop(ef_loop *loop) {
    if (!loop)
        return;
    atomic_store_explicit(&loop->stop, true, memory_order_release);
    ef__wake(loop);
}

/* ------------------------------------------------------------------------------------------ */
/* Timers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void ef__timer_destroy(ef_loop *loop, ef__timer *t) {
    ef__obj_unwatch(loop, &t->obj);
    close(t->obj.fd);
    ef__obj_detach(loop, &t->obj);
    free(t);
}

EF_API int ef_loop_timer_add(ef_loop *loop, uint64_t ms, int repeat, uint64_t *timer_id) {
    if (!loop || !timer_id || (repeat && ms == 0))
        return EF_EINVAL;
    ef__timer *t = calloc(1, sizeof *t);
    if (!t)
        return EF_ENOMEM;
    t->repeat = repeat != 0;
    t->obj.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (t->obj.fd < 0) {
        free(t);
        return ef__sys(loop, errno);
    }
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(ms / 1000);
    its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    if (ms == 0)
        its.it_value.tv_nsec = 1; /* an all-zero value would disarm the timer */
    if (t->repeat)
        its.it_interval = its.it_value;
    int rc = EF_OK;
    if (timerfd_settime(t->obj.fd, 0, &its, NULL) < 0)
        rc = ef__sys(loop, errno);
    if (rc == EF_OK)
        rc = ef__obj_attach(loop, &t->obj, EF__TIMER);
    if (rc == EF_OK) {
        rc = ef__obj_watch(loop, &t->obj, EPOLLIN);
        if (rc < 0)
            ef__obj_detach(loop, &t->obj);
    }
    if (rc < 0) {
        close(t->obj.fd);
        free(t);
        return rc;
    }
    *timer_id = t->obj.id;
    return EF_OK;
}

EF_API int ef_loop_timer_cancel(ef_loop *loop, uint64_t timer_id) {
    ef__timer *t = (ef__timer *)ef__obj_find(loop, timer_id, EF__TIMER);
    if (!t)
        return EF_ECLOSED;
    ef__timer_destroy(loop, t);
    return EF_OK;
}

static void ef__timer_event(ef_loop *loop, ef__timer *t) {
    uint64_t expirations;
    if (read(t->obj.fd, &expirations, sizeof expirations) != (ssize_t)sizeof expirations)
        return; /* not due after all (EAGAIN) */
    uint64_t id = t->obj.id;
    /* Missed expirations of a repeating timer collapse into one call: callers want "it is time",
     * not a burst. A one-shot is gone before its callback so it can re-arm under a new id. */
    if (!t->repeat)
        ef__timer_destroy(loop, t);
    if (loop->cfg.on_timer)
        loop->cfg.on_timer(loop, loop->cfg.user, id);
}

/* ------------------------------------------------------------------------------------------ */
/* Run                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Work owed outside any fd event: frames buffered while a connection was paused, and the
 * callbacks of connections closed since the last turn (including by calls made before run). */
static void ef__deferred(ef_loop *loop) {
    for (size_t i = 0; i < loop->nresumed; i++) {
        ef__conn *c = (ef__conn *)ef__obj_find(loop, loop->resumed[i], EF__CONN);
        if (c)
            ef__conn_resume_parse(loop, c);
        ef__dead_flush(loop, true);
    }
    loop->nresumed = 0;
    ef__dead_flush(loop, true);
}

static void ef__dispatch(ef_loop *loop, const struct epoll_event *ev) {
    if (ev->data.u64 == EF__WAKE_ID) {
        ef__wake_event(loop);
        return;
    }
    ef__obj *obj = ef__obj_find(loop, ev->data.u64, 0);
    if (!obj)
        return; /* closed earlier in this batch */
    switch (obj->kind) {
    case EF__CONN: ef__conn_event(loop, (ef__conn *)obj, ev->events); break;
    case EF__LISTENER: ef__listener_event(loop, obj); break;
    case EF__TIMER: ef__timer_event(loop, (ef__timer *)obj); break;
    default: break;
    }
}

static bool ef__stopping(const ef_loop *loop) {
    return atomic_load_explicit(&loop->stop, memory_order_acquire);
}

EF_API int ef_loop_run(ef_loop *loop) {
    if (!loop || loop->running)
        return EF_EINVAL;
    loop->running = true;
    int rc = EF_OK;
    while (!ef__stopping(loop)) {
        ef__deferred(loop);
        if (ef__stopping(loop))
            break;
        int timeout = (loop->dead_head || loop->nresumed) ? 0 : -1;
        int n = epoll_wait(loop->epfd, loop->events, EF__MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ef__sys(loop, errno);
            break;
        }
        for (int i = 0; i < n; i++) {
            ef__dispatch(loop, &loop->events[i]);
            ef__dead_flush(loop, true);
            /* Events left in the batch are not lost: epoll is level-triggered. */
            if (ef__stopping(loop))
                break;
        }
    }
    atomic_store_explicit(&loop->stop, false, memory_order_relaxed);
    loop->running = false;
    return rc;
}
