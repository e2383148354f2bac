/* Sessions: key derivation (vectors computed independently with Python's hmac/hashlib and the
 * cryptography package's AESGCM), seal/open, counters, and the loop's sealed connections and
 * pre-authentication limit over real loopback sockets. */
#include "ef_test.h"

#include "elasticflow.h"
#include "loop_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char cookie[] = "correct horse battery staple";

static void hex_to(const char *hex, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void test_keys(ef_session_keys *keys) {
    uint8_t mn[32], wn[32];
    for (int i = 0; i < 32; i++) {
        mn[i] = (uint8_t)i;
        wn[i] = (uint8_t)(100 + i);
    }
    ef_session_derive((const uint8_t *)cookie, strlen(cookie), mn, wn, keys);
}

static void test_session_derive_vectors(ef_t *t) {
    ef_session_keys keys;
    uint8_t mn[32], wn[32], want[32];
    for (int i = 0; i < 32; i++) {
        mn[i] = (uint8_t)i;
        wn[i] = (uint8_t)(100 + i);
    }
    CHECK_EQ(t, ef_session_derive((const uint8_t *)cookie, strlen(cookie), mn, wn, &keys), EF_OK);
    /* Python: HKDF by hand, hmac.new(salt, cookie, sha256) then T(1), T(2) over EF_SESSION_INFO. */
    hex_to("e6a8bb30e2acf1424239bf7c60e1f6a1aa7beb8b50aa4f1fb85950e75e389932", want, 32);
    CHECK(t, memcmp(keys.master_to_worker, want, 32) == 0);
    hex_to("03ec2a7d3f21b320cebda107b0a0fc11bd032e333ec08356ae45eaeb3a7fa183", want, 32);
    CHECK(t, memcmp(keys.worker_to_master, want, 32) == 0);
    /* Swapped nonces (a reflected handshake) give other keys. */
    ef_session_keys swapped;
    CHECK_EQ(t, ef_session_derive((const uint8_t *)cookie, strlen(cookie), wn, mn, &swapped),
             EF_OK);
    CHECK(t, memcmp(swapped.master_to_worker, keys.master_to_worker, 32) != 0);
    CHECK_EQ(t, ef_session_derive(NULL, 0, mn, wn, &keys), EF_EINVAL);
    CHECK_EQ(t, ef_session_derive((const uint8_t *)cookie, 3, NULL, wn, &keys), EF_EINVAL);
}

static void test_seal_known_answers(ef_t *t) {
    ef_session_keys keys;
    test_keys(&keys);
    uint8_t header[EF_FRAME_HEADER_SIZE], tag[16], want[64];
    for (int i = 0; i < 32; i++)
        header[i] = (uint8_t)i;
    uint8_t payload[] = "hello, sealed world";
    size_t len = strlen((char *)payload);

    /* MAC only: AESGCM(key).encrypt(nonce, b"", header + payload) is the tag alone. */
    ef_seal *mac = ef_seal_create(keys.master_to_worker, 'M', 0);
    CHECK(t, mac != NULL);
    CHECK_EQ(t, ef_seal_frame(mac, header, payload, len, tag), EF_OK);
    hex_to("69b991c21191d3b6cbbe4923d8e3d6f4", want, 16);
    CHECK(t, memcmp(tag, want, 16) == 0);
    CHECK(t, memcmp(payload, "hello, sealed world", len) == 0); /* untouched */
    CHECK_EQ(t, ef_seal_counter(mac), 1);
    CHECK_EQ(t, ef_seal_frame(mac, header, payload, len, tag), EF_OK);
    hex_to("e554e8a0c6528d70f318cd6f720db3a2", want, 16); /* counter 1 */
    CHECK(t, memcmp(tag, want, 16) == 0);
    ef_seal_free(mac);

    /* Encrypted: ciphertext then tag. */
    ef_seal *enc = ef_seal_create(keys.master_to_worker, 'M', EF_SEAL_ENCRYPT);
    CHECK_EQ(t, ef_seal_frame(enc, header, payload, len, tag), EF_OK);
    hex_to("87a6b7638c1aacbcaad4f38793ae775fa40b6d667e30b7bf91cec8a2fc7f8de889d949", want,
           len + 16);
    CHECK(t, memcmp(payload, want, len) == 0);
    CHECK(t, memcmp(tag, want + len, 16) == 0);
    ef_seal_free(enc);
    ef_seal_free(NULL);
    CHECK(t, ef_seal_create(keys.master_to_worker, 'X', 0) == NULL);
}

/* Seal n frames, then open them: in order they open; a flipped byte, a replay, a frame sealed
 * with the other direction's key, a reordered frame each fail. */
static void check_open_rules(ef_t *t, unsigned mode) {
    ef_session_keys keys;
    test_keys(&keys);
    ef_seal *tx = ef_seal_create(keys.master_to_worker, 'M', mode);
    ef_seal *rx = ef_seal_create(keys.master_to_worker, 'M', mode | EF_SEAL_OPENER);
    ef_seal *wrong = ef_seal_create(keys.worker_to_master, 'W', mode);
    uint8_t h[3][EF_FRAME_HEADER_SIZE], p[3][100], tag[3][16];
    for (int f = 0; f < 3; f++) {
        CHECK_EQ(t, ef_frame_encode_sealed(h[f], EF_FRAME_RESULT, 0, 0, 7, (uint64_t)f, 100),
                 EF_OK);
        memset(p[f], 'a' + f, 100);
        CHECK_EQ(t, ef_seal_frame(tx, h[f], p[f], 100, tag[f]), EF_OK);
    }
    uint8_t copy[100];
    /* A flipped payload byte, then a flipped header byte: refused, counter unchanged. */
    memcpy(copy, p[0], 100);
    copy[50] ^= 1;
    CHECK_EQ(t, ef_seal_open(rx, h[0], copy, 100, tag[0]), EF_EFRAMEAUTH);
    uint8_t hcopy[EF_FRAME_HEADER_SIZE];
    memcpy(hcopy, h[0], sizeof hcopy);
    hcopy[12] ^= 1; /* aux */
    memcpy(copy, p[0], 100);
    CHECK_EQ(t, ef_seal_open(rx, hcopy, copy, 100, tag[0]), EF_EFRAMEAUTH);
    /* Reordered: frame 1 first. */
    memcpy(copy, p[1], 100);
    CHECK_EQ(t, ef_seal_open(rx, h[1], copy, 100, tag[1]), EF_EFRAMEAUTH);
    CHECK_EQ(t, ef_seal_counter(rx), 0);
    memcpy(copy, p[0], 100);
    CHECK_EQ(t, ef_seal_open(rx, h[0], copy, 100, tag[0]), EF_OK);
    uint8_t plain[100];
    memset(plain, 'a', 100);
    CHECK(t, memcmp(copy, plain, 100) == 0);
    /* Replayed frame 0. */
    memcpy(copy, p[0], 100);
    CHECK_EQ(t, ef_seal_open(rx, h[0], copy, 100, tag[0]), EF_EFRAMEAUTH);
    /* The other direction's key (a reflected frame) at the right counter. */
    uint8_t wtag[16], wp[100];
    memset(wp, 'b', 100);
    ef_seal *wrong_at_1 = wrong;
    CHECK_EQ(t, ef_seal_frame(wrong_at_1, h[1], wp, 100, wtag), EF_OK); /* counter 0 */
    CHECK_EQ(t, ef_seal_frame(wrong_at_1, h[1], wp, 100, wtag), EF_OK); /* counter 1 */
    CHECK_EQ(t, ef_seal_open(rx, h[1], wp, 100, wtag), EF_EFRAMEAUTH);
    memcpy(copy, p[1], 100);
    CHECK_EQ(t, ef_seal_open(rx, h[1], copy, 100, tag[1]), EF_OK);
    CHECK_EQ(t, ef_seal_counter(rx), 2);
    /* Openers do not seal and sealers do not open. */
    CHECK_EQ(t, ef_seal_frame(rx, h[2], p[2], 100, tag[2]), EF_EINVAL);
    CHECK_EQ(t, ef_seal_open(tx, h[2], p[2], 100, tag[2]), EF_EINVAL);
    ef_seal_free(tx);
    ef_seal_free(rx);
    ef_seal_free(wrong);
}

static void test_seal_open_rules_mac(ef_t *t) { check_open_rules(t, 0); }
static void test_seal_open_rules_encrypted(ef_t *t) { check_open_rules(t, EF_SEAL_ENCRYPT); }

static void test_frame_parse_sealed(ef_t *t) {
    uint8_t buf[EF_FRAME_HEADER_SIZE + 10 + 16] = {0};
    CHECK_EQ(t, ef_frame_encode_sealed(buf, EF_FRAME_PARCEL, 0x11, 1, 3, 99, 10), EF_OK);
    ef_frame f;
    const uint8_t *tag = NULL;
    for (size_t n = 0; n < sizeof buf; n++)
        CHECK_EQ(t, ef_frame_parse_sealed(buf, n, 1000, &f, &tag), EF_ENEEDMORE);
    CHECK_EQ(t, ef_frame_parse_sealed(buf, sizeof buf, 1000, &f, &tag), (ptrdiff_t)sizeof buf);
    CHECK_EQ(t, f.payload.len, 10);
    CHECK(t, tag == buf + EF_FRAME_HEADER_SIZE + 10);
    CHECK_EQ(t, ef_frame_parse_sealed(buf, sizeof buf, 9, &f, &tag), EF_ETOOLONG);
    /* The unsealed parser checks the (zero) payload CRC and refuses it. */
    CHECK_EQ(t, ef_frame_parse(buf, EF_FRAME_HEADER_SIZE + 10, 1000, &f), EF_ECHECKSUM);
}

/* ------------------------------------------------------------------------------------------ */
/* The loop: a sealed connection against a raw client socket                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct sl {
    ef_loop *loop;
    ef_session_keys keys;
    int encrypt;
    int file_fd;
    uint64_t conn;
    int close_reason, closes, frames, seal_rc;
} sl;

static const char file_text[] = "bytes that leave with sendfile, tagged from a pread";

static void sl_accept(ef_loop *loop, void *user, uint64_t listener, uint64_t conn) {
    (void)loop;
    (void)listener;
    ((sl *)user)->conn = conn;
}

static void sl_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    sl *s = user;
    s->frames++;
    if (f->type == EF_FRAME_HELLO) {
        s->seal_rc = ef_loop_seal(loop, conn, &s->keys, 'W', s->encrypt);
        ef_loop_send(loop, conn, EF_FRAME_WELCOME, 0, 0, 0, 0, (const uint8_t *)"sealed", 6);
        /* Sealed: no CRC needed (the tag covers the payload), the bytes come from a pread. */
        ef_send fs = {.type = EF_FRAME_PARCEL,
                      .len = strlen(file_text),
                      .options = EF_SEND_FROM_FILE,
                      .file_fd = s->file_fd};
        ef_loop_send_with(loop, conn, &fs);
        fs.payload = (const uint8_t *)file_text; /* lent: the tag comes from them, not a pread */
        ef_loop_send_with(loop, conn, &fs);
        return;
    }
    /* Echo, sealed: proves the payload arrived opened (and decrypted). */
    ef_loop_send(loop, conn, EF_FRAME_RESULT, f->flags, 0, f->aux, f->id, f->payload.ptr,
                 f->payload.len);
}

static void sl_close(ef_loop *loop, void *user, uint64_t conn, int reason) {
    (void)loop;
    (void)conn;
    sl *s = user;
    s->closes++;
    s->close_reason = reason;
}

static void *sl_run(void *arg) {
    ef_loop_run(arg);
    return NULL;
}

static int sl_client(uint16_t port) {
    int fd = raw_connect(port, 0);
    struct timeval tv = {5, 0}; /* a bug must fail the test, not hang it */
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool sl_read(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

/* Create s->loop from cfg, listen on a free loopback port and run the loop on th; returns a
 * client socket connected to it. */
static int sl_start(sl *s, const ef_loop_config *cfg, pthread_t *th) {
    s->loop = ef_loop_create(cfg, NULL);
    uint64_t listener;
    uint16_t port = 0;
    if (!s->loop || ef_loop_listen(s->loop, "127.0.0.1", 0, &listener, &port) != EF_OK)
        return -1;
    pthread_create(th, NULL, sl_run, s->loop);
    return sl_client(port);
}

/* Read one sealed frame and open it; returns its payload length or -1. */
static ptrdiff_t sl_read_sealed(int fd, ef_seal *rx, uint8_t *buf, size_t cap, ef_frame *f) {
    if (!sl_read(fd, buf, EF_FRAME_HEADER_SIZE))
        return -1;
    uint32_t len;
    memcpy(&len, buf + 8, 4);
    if (EF_FRAME_HEADER_SIZE + (size_t)len + 16 > cap ||
        !sl_read(fd, buf + EF_FRAME_HEADER_SIZE, (size_t)len + 16))
        return -1;
    const uint8_t *tag;
    if (ef_frame_parse_sealed(buf, EF_FRAME_HEADER_SIZE + len + 16, cap, f, &tag) < 0)
        return -1;
    if (ef_seal_open(rx, buf, buf + EF_FRAME_HEADER_SIZE, len, tag) != EF_OK)
        return -1;
    return len;
}

/* Seal and write one frame; keeps a copy of the bytes sent in last (for a replay). */
static bool sl_send_sealed(int fd, ef_seal *tx, uint8_t type, const uint8_t *payload, size_t len,
                           uint8_t *last) {
    ef_frame_encode_sealed(last, type, 0, 0, 0, 1, len);
    memcpy(last + EF_FRAME_HEADER_SIZE, payload, len);
    if (ef_seal_frame(tx, last, last + EF_FRAME_HEADER_SIZE, len,
                      last + EF_FRAME_HEADER_SIZE + len) < 0)
        return false;
    return write_all(fd, last, EF_FRAME_HEADER_SIZE + len + 16);
}

static bool sl_closed_by_peer(int fd) {
    uint8_t b;
    ssize_t r = recv(fd, &b, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void check_sealed_loop(ef_t *t, int encrypt) {
    static sl s;
    memset(&s, 0, sizeof s);
    test_keys(&s.keys);
    s.encrypt = encrypt;
    char path[] = "/tmp/ef_session_XXXXXX";
    s.file_fd = mkstemp(path);
    unlink(path);
    CHECK(t, write(s.file_fd, file_text, strlen(file_text)) == (ssize_t)strlen(file_text));
    ef_loop_config cfg = {.user = &s,
                          .on_accept = sl_accept,
                          .on_frame = sl_frame,
                          .on_close = sl_close,
                          .preauth_payload = 1024};
    pthread_t th;
    int fd = sl_start(&s, &cfg, &th);
    CHECK(t, fd >= 0);
    unsigned mode = encrypt ? EF_SEAL_ENCRYPT : 0;
    ef_seal *tx = ef_seal_create(s.keys.master_to_worker, 'M', mode);
    ef_seal *rx = ef_seal_create(s.keys.worker_to_master, 'W', mode | EF_SEAL_OPENER);
    /* A plain HELLO; the server seals on it and answers sealed, once from memory, once from a
     * file (sendfile with a pread tag, or encrypted from a pread). */
    uint8_t hello[EF_FRAME_HEADER_SIZE + 2];
    struct iovec iov[2];
    ef_frame_encode(hello, EF_FRAME_HELLO, 0, 0, 0, 0, (const uint8_t *)"hi", 2, iov);
    memcpy(hello + EF_FRAME_HEADER_SIZE, "hi", 2);
    CHECK(t, write_all(fd, hello, sizeof hello));
    size_t cap = 200 * 1024;
    uint8_t *buf = malloc(cap), *last = malloc(cap), *big = malloc(100 * 1024);
    ef_frame f;
    CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), 6);
    CHECK(t, f.type == EF_FRAME_WELCOME && memcmp(f.payload.ptr, "sealed", 6) == 0);
    for (int copy = 0; copy < 2; copy++) {
        CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), (ptrdiff_t)strlen(file_text));
        CHECK(t, memcmp(f.payload.ptr, file_text, strlen(file_text)) == 0);
    }

    /* Sealed but not yet trusted: a small frame passes (and makes the connection trusted), then
     * a 100 KiB one is accepted, over the 1 KiB pre-authentication limit. */
    CHECK(t, sl_send_sealed(fd, tx, EF_FRAME_AUTH, (const uint8_t *)"proof", 5, last));
    CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), 5);
    CHECK(t, memcmp(f.payload.ptr, "proof", 5) == 0);
    for (size_t i = 0; i < 100 * 1024; i++)
        big[i] = (uint8_t)(i * 7);
    CHECK(t, sl_send_sealed(fd, tx, EF_FRAME_PARCEL, big, 100 * 1024, last));
    CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), 100 * 1024);
    CHECK(t, memcmp(f.payload.ptr, big, 100 * 1024) == 0);
    /* The same bytes again: a replay, refused at once. */
    CHECK(t, write_all(fd, last, EF_FRAME_HEADER_SIZE + 100 * 1024 + 16));
    CHECK(t, sl_closed_by_peer(fd));
    close(fd);
    ef_loop_stop(s.loop);
    pthread_join(th, NULL);
    CHECK_EQ(t, s.seal_rc, EF_OK);
    CHECK_EQ(t, s.closes, 1);
    CHECK_EQ(t, s.close_reason, EF_EFRAMEAUTH);
    CHECK_EQ(t, ef_loop_seal(s.loop, s.conn, &s.keys, 'W', 0), EF_ECLOSED);
    ef_loop_free(s.loop);
    ef_seal_free(tx);
    ef_seal_free(rx);
    close(s.file_fd);
    free(buf);
    free(last);
    free(big);
}

static void test_loop_sealed_mac(ef_t *t) { check_sealed_loop(t, 0); }
static void test_loop_sealed_encrypted(ef_t *t) { check_sealed_loop(t, 1); }

/* MAC only, a file payload is read when its turn comes to be written, a piece at a time, and
 * its tag finished then, after later frames were sealed: a payload of many pieces with a frame
 * from memory between two from the file, to a reader too slow for the socket to take a piece
 * whole, all open in order; each file run's release runs once. Then a file that is cut short
 * after the send was queued but before its bytes are read closes the connection (EIO). */
typedef struct slf {
    sl base;
    size_t big, small_offset;
    bool truncate; /* queue a big memory frame first, so the file run waits behind it */
    int releases;
} slf;

static void slf_release(void *ctx) { ((slf *)ctx)->releases++; }

static void slf_frame(ef_loop *loop, void *user, uint64_t conn, const ef_frame *f) {
    slf *s = user;
    if (f->type != EF_FRAME_HELLO)
        return;
    s->base.seal_rc = ef_loop_seal(loop, conn, &s->base.keys, 'W', 0);
    ef_send fs = {.type = EF_FRAME_PARCEL,
                  .id = 1,
                  .len = s->big,
                  .options = EF_SEND_FROM_FILE,
                  .file_fd = s->base.file_fd,
                  .file_offset = 7,
                  .release = slf_release,
                  .ctx = s};
    if (s->truncate) {
        static uint8_t filler[4 << 20];
        ef_loop_send(loop, conn, EF_FRAME_RESULT, 0, 0, 0, 9, filler, sizeof filler);
        ef_loop_send_with(loop, conn, &fs);
        return;
    }
    ef_loop_send_with(loop, conn, &fs);
    ef_loop_send(loop, conn, EF_FRAME_RESULT, 0, 0, 0, 2, (const uint8_t *)"between", 7);
    fs.id = 3;
    fs.len = 1000;
    fs.file_offset = s->small_offset;
    ef_loop_send_with(loop, conn, &fs);
}

static int slf_start(ef_t *t, slf *s, pthread_t *th, uint8_t *content, size_t size) {
    test_keys(&s->base.keys);
    char path[] = "/tmp/ef_session_XXXXXX";
    s->base.file_fd = mkstemp(path);
    unlink(path);
    CHECK(t, write(s->base.file_fd, content, size) == (ssize_t)size);
    ef_loop_config cfg = {.user = s,
                          .on_accept = sl_accept,
                          .on_frame = slf_frame,
                          .on_close = sl_close,
                          .send_high_water = 64u << 20};
    s->base.loop = ef_loop_create(&cfg, NULL);
    uint64_t listener;
    uint16_t port = 0;
    if (!s->base.loop || ef_loop_listen(s->base.loop, "127.0.0.1", 0, &listener, &port) != EF_OK)
        return -1;
    pthread_create(th, NULL, sl_run, s->base.loop);
    int fd = raw_connect(port, 16 * 1024);
    struct timeval tv = {5, 0};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t hello[EF_FRAME_HEADER_SIZE + 2];
    struct iovec iov[2];
    ef_frame_encode(hello, EF_FRAME_HELLO, 0, 0, 0, 0, (const uint8_t *)"hi", 2, iov);
    memcpy(hello + EF_FRAME_HEADER_SIZE, "hi", 2);
    CHECK(t, write_all(fd, hello, sizeof hello));
    return fd;
}

static void test_loop_sealed_file_read_when_written(ef_t *t) {
    size_t size = (3u << 20) + 12345, cap = size + 4096;
    uint8_t *content = malloc(size), *buf = malloc(cap);
    for (size_t i = 0; i < size; i++)
        content[i] = (uint8_t)(i * 131 + (i >> 12));
    static slf s;
    memset(&s, 0, sizeof s);
    s.big = size - 7 - 5; /* not a whole number of pieces, and not to the end of the file */
    s.small_offset = 100003;
    pthread_t th;
    int fd = slf_start(t, &s, &th, content, size);
    CHECK(t, fd >= 0);
    usleep(100 * 1000); /* the socket fills before anything is read */
    ef_seal *rx = ef_seal_create(s.base.keys.worker_to_master, 'W', EF_SEAL_OPENER);
    ef_frame f;
    CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), (ptrdiff_t)s.big);
    CHECK(t, f.id == 1 && memcmp(f.payload.ptr, content + 7, s.big) == 0);
    CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), 7);
    CHECK(t, f.id == 2 && memcmp(f.payload.ptr, "between", 7) == 0);
    CHECK_EQ(t, sl_read_sealed(fd, rx, buf, cap, &f), 1000);
    CHECK(t, f.id == 3 && memcmp(f.payload.ptr, content + s.small_offset, 1000) == 0);
    CHECK_EQ(t, ef_seal_counter(rx), 3);
    close(fd);
    ef_loop_stop(s.base.loop);
    pthread_join(th, NULL);
    CHECK_EQ(t, s.base.seal_rc, EF_OK);
    CHECK_EQ(t, s.releases, 2);
    ef_loop_free(s.base.loop);
    ef_seal_free(rx);
    close(s.base.file_fd);

    /* Cut short while queued: the memory frame arrives whole, then the connection closes. */
    memset(&s, 0, sizeof s);
    s.big = size - 7;
    s.truncate = true;
    fd = slf_start(t, &s, &th, content, size);
    CHECK(t, fd >= 0);
    usleep(100 * 1000);
    CHECK(t, ftruncate(s.base.file_fd, 1 << 20) == 0);
    rx = ef_seal_create(s.base.keys.worker_to_master, 'W', EF_SEAL_OPENER);
    uint8_t *filler = malloc((4u << 20) + 4096);
    CHECK_EQ(t, sl_read_sealed(fd, rx, filler, (4u << 20) + 4096, &f), 4 << 20);
    CHECK(t, f.id == 9);
    /* The file frame's header and first MiB may come; never its tag. */
    CHECK(t, sl_read_sealed(fd, rx, buf, cap, &f) < 0);
    close(fd);
    ef_loop_stop(s.base.loop);
    pthread_join(th, NULL);
    CHECK_EQ(t, s.base.closes, 1);
    CHECK_EQ(t, s.base.close_reason, EF_ESYS);
    CHECK_EQ(t, ef_loop_last_errno(s.base.loop), EIO);
    CHECK_EQ(t, s.releases, 1);
    ef_loop_free(s.base.loop);
    ef_seal_free(rx);
    close(s.base.file_fd);
    free(filler);
    free(content);
    free(buf);
}

/* Before authentication a frame header claiming 256 MiB is refused from the header alone (no
 * payload ever sent), also once sealed but before a tag has passed. */
static void test_loop_preauth_limit(ef_t *t) {
    for (int sealed = 0; sealed < 2; sealed++) {
        static sl s;
        memset(&s, 0, sizeof s);
        test_keys(&s.keys);
        s.file_fd = -1;
        ef_loop_config cfg = {.user = &s,
                              .on_accept = sl_accept,
                              .on_frame = sl_frame,
                              .on_close = sl_close,
                              .preauth_payload = 64 * 1024};
        pthread_t th;
        int fd = sl_start(&s, &cfg, &th);
        uint8_t header[EF_FRAME_HEADER_SIZE];
        if (sealed) {
            /* A HELLO makes the server seal (its file send fails: no file, EF_EINVAL). */
            struct iovec iov[2];
            uint8_t hello[EF_FRAME_HEADER_SIZE + 2];
            ef_frame_encode(hello, EF_FRAME_HELLO, 0, 0, 0, 0, (const uint8_t *)"hi", 2, iov);
            memcpy(hello + EF_FRAME_HEADER_SIZE, "hi", 2);
            CHECK(t, write_all(fd, hello, sizeof hello));
        }
        /* A well-formed header (its CRC is right) claiming 256 MiB; the payload CRC is never
         * reached. */
        ef_frame_encode_sealed(header, EF_FRAME_PARCEL, 0, 0, 0, 1, 256u << 20);
        CHECK(t, write_all(fd, header, sizeof header));
        /* Drain the WELCOME, if any, then the close. */
        uint8_t sink[4096];
        ssize_t r;
        while ((r = recv(fd, sink, sizeof sink, 0)) > 0) {
        }
        CHECK(t, r == 0 || errno == ECONNRESET);
        close(fd);
        ef_loop_stop(s.loop);
        pthread_join(th, NULL);
        CHECK_EQ(t, s.close_reason, EF_ETOOLONG);
        ef_loop_free(s.loop);
    }
}

/* Read one plain frame (header + payload) into buf; returns its payload length or -1. */
static ptrdiff_t sl_read_plain(int fd, uint8_t *buf, size_t cap) {
    if (!sl_read(fd, buf, EF_FRAME_HEADER_SIZE))
        return -1;
    uint32_t len;
    memcpy(&len, buf + 8, 4);
    if (EF_FRAME_HEADER_SIZE + (size_t)len > cap || !sl_read(fd, buf + EF_FRAME_HEADER_SIZE, len))
        return -1;
    return len;
}

/* A buffer grown for a big frame stays while big frames may still come, and is given back once
 * four small frames in a row followed it (EF__SHRINK_AFTER_SMALL): a big frame, then `smalls`
 * small ones, each echoed; returns the read buffer's capacity after them. */
static size_t sl_capacity_after(ef_t *t, int smalls) {
    static sl s;
    memset(&s, 0, sizeof s);
    s.file_fd = -1;
    ef_loop_config cfg = {.user = &s,
                          .on_accept = sl_accept,
                          .on_frame = sl_frame,
                          .on_close = sl_close,
                          .read_buffer = 4096,
                          .max_payload = 4u << 20};
    pthread_t th;
    int fd = sl_start(&s, &cfg, &th);
    size_t big = 3u << 20, cap = big + 2 * EF_FRAME_HEADER_SIZE;
    uint8_t *frame = calloc(1, cap), *back = malloc(cap);
    struct iovec iov[2];
    ef_frame_encode(frame, EF_FRAME_PARCEL, 0, 0, 0, 1, frame + EF_FRAME_HEADER_SIZE, big, iov);
    CHECK(t, write_all(fd, frame, EF_FRAME_HEADER_SIZE + big));
    CHECK_EQ(t, sl_read_plain(fd, back, cap), (ptrdiff_t)big); /* the echo */
    for (int i = 0; i < smalls; i++) {
        ef_frame_encode(frame, EF_FRAME_PARCEL, 0, 0, 0, 2 + (uint64_t)i, frame + EF_FRAME_HEADER_SIZE,
                        10, iov);
        CHECK(t, write_all(fd, frame, EF_FRAME_HEADER_SIZE + 10));
        CHECK_EQ(t, sl_read_plain(fd, back, cap), 10);
    }
    ef_loop_stop(s.loop);
    pthread_join(th, NULL);
    /* The loop is stopped: its connection may be inspected from here. */
    const ef__conn *c = (const ef__conn *)ef__obj_find(s.loop, s.conn, EF__CONN);
    CHECK(t, c != NULL);
    size_t capacity = c ? c->rcap : 0;
    close(fd);
    ef_loop_free(s.loop);
    free(frame);
    free(back);
    return capacity;
}

static void test_loop_read_buffer_kept_between_big_frames(ef_t *t) {
    CHECK(t, sl_capacity_after(t, 0) > (3u << 20));
    CHECK(t, sl_capacity_after(t, 3) > (3u << 20));
}

static void test_loop_read_buffer_given_back(ef_t *t) { CHECK_EQ(t, sl_capacity_after(t, 4), 4096); }

void suite_session(ef_t *t) {
    RUN(t, test_loop_read_buffer_kept_between_big_frames);
    RUN(t, test_loop_read_buffer_given_back);
    RUN(t, test_session_derive_vectors);
    RUN(t, test_seal_known_answers);
    RUN(t, test_seal_open_rules_mac);
    RUN(t, test_seal_open_rules_encrypted);
    RUN(t, test_frame_parse_sealed);
    RUN(t, test_loop_sealed_mac);
    RUN(t, test_loop_sealed_encrypted);
    RUN(t, test_loop_sealed_file_read_when_written);
    RUN(t, test_loop_preauth_limit);
}
