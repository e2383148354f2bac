/* Word counting: the counter against a naive reference, on random inputs fed with random split
 * points, every tokenizer, partition count and case mode; then merge, serialization, export. */
#include "ef_test.h"

#include "count_internal.h"
#include "elasticflow.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- reference: one byte at a time, no cleverness ---------------------------------------- */

typedef struct ref_word {
    const uint8_t *ptr;
    size_t len;
    uint64_t count;
} ref_word;

typedef struct ref {
    uint8_t *text; /* the input, lowercased when asked; words point into it */
    ref_word *w;
    size_t n;
} ref;

static int ref_is_space(uint8_t b) {
    return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r';
}

static int ref_bytes_cmp(const ref_word *a, const ref_word *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++)
        if (a->ptr[i] != b->ptr[i])
            return a->ptr[i] < b->ptr[i] ? -1 : 1;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static int ref_bytes_qcmp(const void *a, const void *b) { return ref_bytes_cmp(a, b); }

static int ref_export_qcmp(const void *pa, const void *pb) {
    const ref_word *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return ref_bytes_cmp(a, b);
}

static ref ref_build(const uint8_t *in, size_t len, int lower) {
    ref r = {malloc(len + 1), calloc(len / 2 + 1, sizeof(ref_word)), 0};
    for (size_t i = 0; i < len; i++)
        r.text[i] = (uint8_t)(lower && in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    size_t i = 0;
    while (i < len) {
        if (ref_is_space(r.text[i])) {
            i++;
            continue;
        }
        size_t s = i;
        while (i < len && !ref_is_space(r.text[i]))
            i++;
        r.w[r.n++] = (ref_word){r.text + s, i - s, 1};
    }
    qsort(r.w, r.n, sizeof *r.w, ref_bytes_qcmp);
    size_t m = 0;
    for (size_t k = 0; k < r.n; k++) {
        if (m && ref_bytes_cmp(&r.w[m - 1], &r.w[k]) == 0)
            r.w[m - 1].count++;
        else
            r.w[m++] = r.w[k];
    }
    r.n = m;
    qsort(r.w, r.n, sizeof *r.w, ref_export_qcmp);
    return r;
}

static void ref_free(ref *r) {
    free(r->text);
    free(r->w);
}

static uint64_t ref_total(const ref *r) {
    uint64_t t = 0;
    for (size_t i = 0; i < r->n; i++)
        t += r->w[i].count;
    return t;
}

/* The whole export of c equals the reference, entry by entry; returns 1 when it does. */
static int matches_ref(ef_t *t, const ef_counter *c, const ref *r) {
    int before = t->test_failed;
    CHECK_EQ(t, ef_counter_distinct(c), r->n);
    CHECK_EQ(t, ef_counter_total(c), ref_total(r));
    ef_word_count *out = malloc((r->n + 1) * sizeof *out);
    ptrdiff_t n = ef_counter_export(c, out, r->n + 1);
    CHECK_EQ(t, n, (ptrdiff_t)r->n);
    for (size_t i = 0; n == (ptrdiff_t)r->n && i < r->n; i++) {
        if (out[i].count != r->w[i].count || out[i].word.len != r->w[i].len ||
            memcmp(out[i].word.ptr, r->w[i].ptr, r->w[i].len) != 0) {
            CHECK(t, !"export entry differs from the reference");
            fprintf(stderr, "    at %zu: got %llu x%zu, want %llu x%zu\n", i,
                    (unsigned long long)out[i].count, out[i].word.len,
                    (unsigned long long)r->w[i].count, r->w[i].len);
            break;
        }
    }
    for (size_t i = 0; i < r->n && i < 50; i++)
        CHECK_EQ(t, ef_counter_get(c, r->w[i].ptr, r->w[i].len), r->w[i].count);
    free(out);
    return t->test_failed == before;
}

/* ---- generators ------------------------------------------------------------------------- */

/* Whitespace of every kind, the edges of 'A'..'Z' and 'a'..'z', the bytes just outside the
 * whitespace range, NUL, and high bytes that equal whitespace or letters with bit 7 set. */
static const uint8_t alphabet[] = {
    ' ',  '\t', '\n', '\v', '\f', '\r', ' ',  '\n', 'A',  'B',  'Y',  'Z',  'a',  'b',
    'y',  'z',  '@',  '[',  '`',  '{',  0x00, 0x08, 0x0e, 0x1f, 0x21, 0x80, 0x89, 0xa0,
    0xc1, 0xda, 0xe1, 0xff, 'E',  'e',  'T',  't',  'H',  'h',  '0',  '.',
};

static uint8_t rand_byte(uint64_t *s) { return alphabet[ef_test_rand(s) % sizeof alphabet]; }

static uint8_t rand_word_byte(uint64_t *s) {
    for (;;) {
        uint8_t b = rand_byte(s);
        if (!ref_is_space(b))
            return b;
    }
}

/* Text mixing raw alphabet noise with words from a small vocabulary, so words repeat (in
 * different cases) and lengths cross the 8-byte and 64-byte boundaries. */
static size_t gen_text(uint64_t *s, uint8_t *buf, size_t cap) {
    uint8_t vocab[24][80];
    size_t vlen[24];
    for (int v = 0; v < 24; v++) {
        vlen[v] = 1 + ef_test_rand(s) % (v < 16 ? 12 : 79);
        for (size_t i = 0; i < vlen[v]; i++)
            vocab[v][i] = rand_word_byte(s);
    }
    size_t n = 0;
    while (n < cap) {
        uint64_t k = ef_test_rand(s) % 10;
        if (k < 2) {
            buf[n++] = rand_byte(s);
        } else {
            int v = (int)(ef_test_rand(s) % 24);
            for (size_t i = 0; i < vlen[v] && n < cap; i++) {
                uint8_t b = vocab[v][i];
                if (ef_test_rand(s) % 4 == 0 && b >= 'a' && b <= 'z')
                    b -= 32;
                buf[n++] = b;
            }
            size_t gap = ef_test_rand(s) % 3;
            for (size_t i = 0; i < gap && n < cap; i++)
                buf[n++] = "  \n\t\r\v\f"[ef_test_rand(s) % 7];
        }
    }
    return n;
}

/* Feed in random pieces, each copied to an allocation of exactly its size so the sanitizer
 * catches any read past the caller's buffer. */
static int feed_split(ef_counter *c, const uint8_t *in, size_t len, uint64_t *s) {
    size_t i = 0;
    while (i < len) {
        size_t piece;
        switch (ef_test_rand(s) % 4) {
        case 0:
            piece = 1;
            break;
        case 1:
            piece = 1 + ef_test_rand(s) % 16;
            break;
        case 2:
            piece = 1 + ef_test_rand(s) % 200;
            break;
        default:
            piece = len - i;
            break;
        }
        if (piece > len - i)
            piece = len - i;
        uint8_t *copy = malloc(piece);
        memcpy(copy, in + i, piece);
        int rc = ef_counter_feed(c, copy, piece);
        free(copy);
        if (rc)
            return rc;
        i += piece;
    }
    return ef_counter_finish(c);
}

static ef_counter *make(uint32_t parts, uint32_t flags, size_t cap) {
    ef_counter_options o = {.partitions = parts, .flags = flags, .initial_capacity = cap};
    return ef_counter_create(&o);
}

static int tokenizer_count(void) {
    ef_counter *c = ef_counter_create(NULL);
    int n = ef__counter_set_tokenizer(c, EF__TOKENIZER_AVX2) == EF_OK ? 2 : 1;
    ef_counter_free(c);
    return n;
}

/* Count text with a fresh counter: feed pieces at random. */
static ef_counter *count_text(const uint8_t *in, size_t len, uint32_t parts, uint32_t flags,
                              int tokenizer, uint64_t *s) {
    ef_counter *c = make(parts, flags, 1 + ef_test_rand(s) % 64);
    if (!c || ef__counter_set_tokenizer(c, tokenizer) != EF_OK || feed_split(c, in, len, s)) {
        ef_counter_free(c);
        return NULL;
    }
    return c;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_count_random_vs_reference(ef_t *t) {
    uint64_t s = 1;
    static const uint32_t parts[] = {1, 7, 16};
    int ntok = tokenizer_count();
    uint8_t *buf = malloc(4096);
    for (int iter = 0; iter < 500; iter++) {
        size_t cap = 1 + ef_test_rand(&s) % (iter % 3 ? 600 : 4000);
        size_t len = gen_text(&s, buf, cap);
        for (uint32_t flags = 0; flags <= EF_COUNT_LOWERCASE; flags++) {
            ref r = ref_build(buf, len, flags != 0);
            for (size_t p = 0; p < 3; p++) {
                for (int tok = 0; tok < ntok; tok++) {
                    ef_counter *c = count_text(buf, len, parts[p], flags, tok, &s);
                    CHECK(t, c != NULL);
                    if (c && !matches_ref(t, c, &r)) {
                        fprintf(stderr, "    iter %d flags %u partitions %u tokenizer %d\n", iter,
                                flags, parts[p], tok);
                        iter = 1 << 30; /* one report is enough */
                    }
                    ef_counter_free(c);
                }
            }
            ref_free(&r);
        }
    }
    free(buf);
}

/* Every byte kind around each 64-byte block edge and at the very end of the buffer. */
static void test_count_block_edges(ef_t *t) {
    uint64_t s = 7;
    int ntok = tokenizer_count();
    uint8_t buf[200];
    for (size_t len = 1; len <= sizeof buf; len++) {
        for (int rep = 0; rep < 4; rep++) {
            for (size_t i = 0; i < len; i++)
                buf[i] = (ef_test_rand(&s) % 3) ? rand_word_byte(&s) : ' ';
            ref r = ref_build(buf, len, 1);
            for (int tok = 0; tok < ntok; tok++) {
                ef_counter *c = make(3, EF_COUNT_LOWERCASE, 0);
                ef__counter_set_tokenizer(c, tok);
                uint8_t *copy = malloc(len);
                memcpy(copy, buf, len);
                CHECK_EQ(t, ef_counter_feed(c, copy, len), EF_OK);
                free(copy);
                CHECK_EQ(t, ef_counter_finish(c), EF_OK);
                matches_ref(t, c, &r);
                ef_counter_free(c);
            }
            ref_free(&r);
        }
    }
}

/* Inputs larger than the lowercasing window, fed whole and in pieces: words cross windows. */
static void test_count_large_inputs(ef_t *t) {
    uint64_t s = 13;
    int ntok = tokenizer_count();
    size_t cap = 70000;
    uint8_t *buf = malloc(cap);
    for (int iter = 0; iter < 6; iter++) {
        size_t len = gen_text(&s, buf, 40000 + ef_test_rand(&s) % (cap - 40000));
        for (uint32_t flags = 0; flags <= EF_COUNT_LOWERCASE; flags++) {
            ref r = ref_build(buf, len, flags != 0);
            for (int tok = 0; tok < ntok; tok++) {
                ef_counter *c = make(16, flags, 0);
                ef__counter_set_tokenizer(c, tok);
                uint8_t *copy = malloc(len);
                memcpy(copy, buf, len);
                CHECK_EQ(t, ef_counter_feed(c, copy, len), EF_OK);
                free(copy);
                CHECK_EQ(t, ef_counter_finish(c), EF_OK);
                matches_ref(t, c, &r);
                ef_counter_free(c);
                c = count_text(buf, len, 7, flags, tok, &s);
                matches_ref(t, c, &r);
                ef_counter_free(c);
            }
            ref_free(&r);
        }
    }
    free(buf);
}

static void test_count_exact_semantics(ef_t *t) {
    /* NUL and high bytes belong to words; only 'A'..'Z' fold; 0xC1/0xDA ('A'/'Z' | 0x80) stay */
    static const uint8_t in[] = "Hello\x00World HELLO\x00world \xc1\xda\xc1 \xc1\xda\xc1\r\n"
                                "\x1f\x0e\x08 x\vx\fx";
    ef_counter *c = make(0, EF_COUNT_LOWERCASE, 0);
    CHECK_EQ(t, ef_counter_partitions(c), 16);
    CHECK_EQ(t, ef_counter_flags(c), EF_COUNT_LOWERCASE);
    CHECK_EQ(t, ef_counter_feed(c, in, sizeof in - 1), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"hello\0world", 11), 2);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"\xc1\xda\xc1", 3), 2);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"\x1f\x0e\x08", 3), 1);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"x", 1), 3);
    CHECK_EQ(t, ef_counter_distinct(c), 4);
    CHECK_EQ(t, ef_counter_total(c), 8);
    ef_counter_free(c);

    /* "a" and "a\0" share a zero-padded head and must stay apart */
    c = make(1, 0, 0);
    CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)"a a\0 a\0\0 a", 10), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"a", 1), 2);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"a\0", 2), 1);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"a\0\0", 3), 1);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"A", 1), 0);
    ef_counter_free(c);
}

static void test_count_empty_and_whitespace(ef_t *t) {
    ef_counter *c = ef_counter_create(NULL);
    CHECK(t, c != NULL);
    CHECK_EQ(t, ef_counter_feed(c, NULL, 0), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_distinct(c), 0);
    CHECK_EQ(t, ef_counter_total(c), 0);
    CHECK_EQ(t, ef_counter_export(c, NULL, 0), 0);
    ef_word_count out[2];
    CHECK_EQ(t, ef_counter_export(c, out, 2), 0);
    CHECK_EQ(t, ef_counter_serialized_size(c), 8);
    uint8_t buf[8];
    CHECK_EQ(t, ef_counter_serialize(c, buf, 8), 8);
    ef_counter *d = ef_counter_create(NULL);
    CHECK_EQ(t, ef_counter_deserialize(d, buf, 8), 0);
    CHECK_EQ(t, ef_counter_distinct(d), 0);
    ef_counter_free(d);

    uint8_t ws[300];
    for (size_t i = 0; i < sizeof ws; i++)
        ws[i] = (uint8_t) " \t\n\v\f\r"[i % 6];
    for (int tok = 0; tok < tokenizer_count(); tok++) {
        ef__counter_set_tokenizer(c, tok);
        CHECK_EQ(t, ef_counter_feed(c, ws, sizeof ws), EF_OK);
        CHECK_EQ(t, ef_counter_feed(c, ws, 1), EF_OK);
        CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    }
    CHECK_EQ(t, ef_counter_distinct(c), 0);
    CHECK_EQ(t, ef_counter_feed(NULL, ws, 1), EF_EINVAL);
    CHECK_EQ(t, ef_counter_feed(c, NULL, 1), EF_EINVAL);
    ef_counter_free(c);
    ef_counter_free(NULL);
}

/* A word over 1 MB straddling several feeds, then the same word inside one feed: both must be
 * the same key, with and without lowercasing. */
static void test_count_long_word(ef_t *t) {
    uint64_t s = 3;
    size_t wl = (1u << 20) + 12345;
    uint8_t *w = malloc(wl), *lw = malloc(wl);
    for (size_t i = 0; i < wl; i++) {
        w[i] = rand_word_byte(&s);
        lw[i] = (uint8_t)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
    }
    for (uint32_t flags = 0; flags <= EF_COUNT_LOWERCASE; flags++) {
        for (int tok = 0; tok < tokenizer_count(); tok++) {
            ef_counter *c = make(7, flags, 0);
            ef__counter_set_tokenizer(c, tok);
            CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)"pre ", 4), EF_OK);
            size_t step = 300001;
            for (size_t i = 0; i < wl; i += step)
                CHECK_EQ(t, ef_counter_feed(c, w + i, wl - i < step ? wl - i : step), EF_OK);
            uint8_t *whole = malloc(wl + 2);
            whole[0] = '\n';
            memcpy(whole + 1, w, wl);
            whole[wl + 1] = ' ';
            CHECK_EQ(t, ef_counter_feed(c, whole, wl + 2), EF_OK);
            free(whole);
            CHECK_EQ(t, ef_counter_feed(c, w, wl), EF_OK); /* pending at the end */
            CHECK_EQ(t, ef_counter_finish(c), EF_OK);
            CHECK_EQ(t, ef_counter_distinct(c), 2);
            CHECK_EQ(t, ef_counter_get(c, flags ? lw : w, wl), 3);
            CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"pre", 3), 1);
            /* one byte shorter or different is another word */
            CHECK_EQ(t, ef_counter_get(c, flags ? lw : w, wl - 1), 0);
            ef_counter_free(c);
        }
    }
    free(w);
    free(lw);
}

/* max_word: a word of exactly the cap counts; one byte longer is EF_EWORDTOOLONG, whether it
 * lies inside one feed, straddles feeds (fed one byte at a time too) or is still pending at the
 * end; the pending buffer never grows past the cap. Every tokenizer and case mode. */
static void test_count_max_word(ef_t *t) {
    const size_t cap = 100;
    uint8_t text[260];
    memset(text, 'a', sizeof text);
    for (uint32_t flags = 0; flags <= EF_COUNT_LOWERCASE; flags++) {
        for (int tok = 0; tok < tokenizer_count(); tok++) {
            for (size_t len = cap - 1; len <= cap + 1; len++) {
                int want = len > cap ? EF_EWORDTOOLONG : EF_OK;
                ef_counter_options o = {.partitions = 4, .flags = flags, .max_word = cap};
                /* whole in one feed, with whitespace around it */
                ef_counter *c = ef_counter_create(&o);
                ef__counter_set_tokenizer(c, tok);
                uint8_t buf[300];
                buf[0] = ' ';
                memcpy(buf + 1, text, len);
                buf[len + 1] = '\n';
                memset(buf + len + 2, ' ', 80); /* long enough for the fast loop */
                CHECK_EQ(t, ef_counter_feed(c, buf, len + 82), want);
                ef_counter_free(c);
                /* one byte at a time: the word is pending, then ends */
                c = ef_counter_create(&o);
                ef__counter_set_tokenizer(c, tok);
                int rc = EF_OK;
                for (size_t i = 0; i < len && rc == EF_OK; i++)
                    rc = ef_counter_feed(c, text + i, 1);
                if (rc == EF_OK)
                    rc = ef_counter_feed(c, (const uint8_t *)" ", 1);
                CHECK_EQ(t, rc, want);
                ef_counter_free(c);
                /* pending at the end of the stream */
                c = ef_counter_create(&o);
                ef__counter_set_tokenizer(c, tok);
                rc = ef_counter_feed(c, text, len);
                if (rc == EF_OK)
                    rc = ef_counter_finish(c);
                CHECK_EQ(t, rc, want);
                if (want == EF_OK)
                    CHECK_EQ(t, ef_counter_get(c, text, len), 1);
                ef_counter_free(c);
            }
        }
    }
    /* no cap (0): a word far longer than any cap above still counts */
    ef_counter *c = ef_counter_create(&(ef_counter_options){.max_word = 0});
    CHECK_EQ(t, ef_counter_feed(c, text, sizeof text), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, text, sizeof text), 1);
    ef_counter_free(c);
    CHECK(t, strlen(ef_strerror(EF_EWORDTOOLONG)) > 0);
}

/* "W<digits of k, reversed>" and a separator; returns the bytes written. */
static size_t put_number_word(uint8_t *p, uint32_t k) {
    size_t n = 0;
    p[n++] = 'W';
    for (uint32_t v = k;; v /= 10) {
        p[n++] = (uint8_t)('0' + v % 10);
        if (v < 10)
            break;
    }
    p[n++] = (k & 1) ? '\n' : ' ';
    return n;
}

static void test_count_growth(ef_t *t) {
    const uint32_t distinct = 120000;
    uint8_t *text = malloc((size_t)distinct * 2 * 10);
    size_t len = 0;
    for (uint32_t k = 0; k < distinct; k++)
        len += put_number_word(text + len, k);
    for (uint32_t k = 0; k < distinct; k += 3) /* some twice */
        len += put_number_word(text + len, k);
    ef_counter *c = make(7, EF_COUNT_LOWERCASE, 1);
    for (size_t i = 0; i < len; i += 65536)
        CHECK_EQ(t, ef_counter_feed(c, text + i, len - i < 65536 ? len - i : 65536), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_distinct(c), distinct);
    CHECK_EQ(t, ef_counter_total(c), distinct + (distinct + 2) / 3);
    uint8_t w[16];
    for (uint32_t k = 0; k < distinct; k += 997) {
        size_t n = put_number_word(w, k) - 1;
        w[0] = 'w';
        CHECK_EQ(t, ef_counter_get(c, w, n), k % 3 == 0 ? 2 : 1);
    }
    ref r = ref_build(text, len, 1);
    matches_ref(t, c, &r);
    ref_free(&r);

    /* reserve up front: the same text then needs no growth, and counts the same */
    ef_counter *d = make(16, EF_COUNT_LOWERCASE, 1);
    CHECK_EQ(t, ef_counter_reserve(d, distinct), EF_OK);
    CHECK_EQ(t, ef_counter_feed(d, text, len), EF_OK);
    CHECK_EQ(t, ef_counter_finish(d), EF_OK);
    CHECK_EQ(t, ef_counter_distinct(d), distinct);
    CHECK_EQ(t, ef_counter_reserve(NULL, 1), EF_EINVAL);
    ef_counter_free(c);
    ef_counter_free(d);
    free(text);
}

/* Two random texts, counted apart, merged every way, against the reference of both. */
static void test_count_merge(ef_t *t) {
    uint64_t s = 11;
    uint8_t *a = malloc(3000), *b = malloc(3000), *ab = malloc(6001);
    for (int iter = 0; iter < 30; iter++) {
        size_t la = gen_text(&s, a, 1 + ef_test_rand(&s) % 3000);
        size_t lb = gen_text(&s, b, 1 + ef_test_rand(&s) % 3000);
        memcpy(ab, a, la);
        ab[la] = ' ';
        memcpy(ab + la + 1, b, lb);
        uint32_t flags = (uint32_t)(iter & 1);
        ref r = ref_build(ab, la + 1 + lb, flags != 0);
        static const uint32_t parts[][2] = {{16, 16}, {7, 7}, {1, 1}, {7, 16}, {16, 1}, {1, 7}};
        for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
            uint32_t pd = parts[k][0], ps = parts[k][1];
            ef_counter *d = count_text(a, la, pd, flags, 0, &s);
            ef_counter *src = count_text(b, lb, ps, flags, 0, &s);
            if (pd == ps) {
                /* partitions in a shuffled order, as threads would finish them */
                uint32_t start = (uint32_t)(ef_test_rand(&s) % pd);
                for (uint32_t p = 0; p < pd; p++)
                    CHECK_EQ(t, ef_counter_merge_partition(d, src, (start + p) % pd), EF_OK);
                CHECK_EQ(t, ef_counter_merge_partition(d, src, pd), EF_EINVAL);
            } else {
                CHECK_EQ(t, ef_counter_merge_partition(d, src, 0), EF_EINVAL);
                CHECK_EQ(t, ef_counter_merge(d, src), EF_OK);
            }
            matches_ref(t, d, &r);
            ef_counter_free(d);
            ef_counter_free(src);
        }
        /* merge (all partitions at once), into an empty counter of another size */
        ef_counter *whole = count_text(ab, la + 1 + lb, 7, flags, 0, &s);
        ef_counter *e = make(3, 0, 1);
        CHECK_EQ(t, ef_counter_merge(e, whole), EF_OK);
        matches_ref(t, e, &r);
        ef_counter *f = make(7, 0, 1);
        CHECK_EQ(t, ef_counter_merge(f, whole), EF_OK);
        matches_ref(t, f, &r);
        /* into itself: every count doubles */
        CHECK_EQ(t, ef_counter_merge(f, f), EF_OK);
        for (size_t i = 0; i < r.n; i++)
            r.w[i].count *= 2;
        matches_ref(t, f, &r);
        ef_counter_free(whole);
        ef_counter_free(e);
        ef_counter_free(f);
        ref_free(&r);
    }
    CHECK_EQ(t, ef_counter_merge(NULL, NULL), EF_EINVAL);
    free(a);
    free(b);
    free(ab);
}

typedef struct merge_job {
    ef_counter *dst;
    const ef_counter *src;
    uint32_t first, step;
    int rc;
} merge_job;

static void *merge_worker(void *arg) {
    merge_job *j = arg;
    for (uint32_t p = j->first; p < ef_counter_partitions(j->dst) && j->rc == EF_OK; p += j->step)
        j->rc = ef_counter_merge_partition(j->dst, j->src, p);
    return NULL;
}

/* The threading note: different partitions of one dst merged from different threads at once. */
static void test_count_merge_threads(ef_t *t) {
    uint64_t s = 23;
    size_t cap = 60000;
    uint8_t *a = malloc(cap), *b = malloc(cap), *ab = malloc(2 * cap + 1);
    size_t la = gen_text(&s, a, cap), lb = gen_text(&s, b, cap);
    memcpy(ab, a, la);
    ab[la] = ' ';
    memcpy(ab + la + 1, b, lb);
    ref r = ref_build(ab, la + 1 + lb, 1);
    ef_counter *dst = count_text(a, la, 16, EF_COUNT_LOWERCASE, 0, &s);
    ef_counter *src = count_text(b, lb, 16, EF_COUNT_LOWERCASE, 0, &s);
    enum { THREADS = 4 };
    pthread_t th[THREADS];
    merge_job jobs[THREADS];
    for (uint32_t k = 0; k < THREADS; k++) {
        jobs[k] = (merge_job){dst, src, k, THREADS, EF_OK};
        CHECK_EQ(t, pthread_create(&th[k], NULL, merge_worker, &jobs[k]), 0);
    }
    for (uint32_t k = 0; k < THREADS; k++) {
        pthread_join(th[k], NULL);
        CHECK_EQ(t, jobs[k].rc, EF_OK);
    }
    matches_ref(t, dst, &r);
    ef_counter_free(dst);
    ef_counter_free(src);
    ref_free(&r);
    free(a);
    free(b);
    free(ab);
}

static void test_count_serialize_roundtrip(ef_t *t) {
    uint64_t s = 5;
    uint8_t *text = malloc(5000);
    for (int iter = 0; iter < 20; iter++) {
        size_t len = gen_text(&s, text, 1 + ef_test_rand(&s) % 5000);
        uint32_t flags = (uint32_t)(iter & 1);
        ref r = ref_build(text, len, flags != 0);
        ef_counter *c = count_text(text, len, 16, flags, 0, &s);
        ef_counter_add(c, (const uint8_t *)"big", 3, (uint64_t)1 << 62); /* a 9-byte varint */
        size_t sz = ef_counter_serialized_size(c);
        uint8_t *buf = malloc(sz);
        CHECK_EQ(t, ef_counter_serialize(c, buf, sz - 1), EF_ESPACE);
        CHECK_EQ(t, ef_counter_serialize(c, buf, sz), (ptrdiff_t)sz);
        CHECK_EQ(t, buf[0], 'E');
        CHECK_EQ(t, buf[3], 'T');
        ef_counter *d = make((uint32_t)(1 + iter % 9), 0, 1);
        CHECK_EQ(t, ef_counter_deserialize(d, buf, sz), (ptrdiff_t)ef_counter_distinct(c));
        CHECK(t, ef_counter_get(d, (const uint8_t *)"big", 3) == (uint64_t)1 << 62);
        /* the round trip equals the original, export for export */
        ef_word_count *x = malloc((r.n + 2) * sizeof *x), *y = malloc((r.n + 2) * sizeof *y);
        ptrdiff_t nx = ef_counter_export(c, x, r.n + 2), ny = ef_counter_export(d, y, r.n + 2);
        CHECK_EQ(t, nx, ny);
        for (ptrdiff_t i = 0; i < nx && i < ny; i++) {
            CHECK_EQ(t, x[i].count, y[i].count);
            CHECK(t, x[i].word.len == y[i].word.len &&
                         memcmp(x[i].word.ptr, y[i].word.ptr, x[i].word.len) == 0);
        }
        /* deserializing again adds */
        CHECK_EQ(t, ef_counter_deserialize(d, buf, sz), (ptrdiff_t)ef_counter_distinct(c));
        CHECK_EQ(t, ef_counter_total(d), ef_counter_total(c) * 2);
        free(x);
        free(y);
        free(buf);
        ef_counter_free(c);
        ef_counter_free(d);
        ref_free(&r);
    }
    free(text);
}

/* A small valid buffer: 3 entries, one with a 2-byte length and one with a 3-byte count. */
static size_t valid_buffer(uint8_t *buf, size_t cap) {
    ef_counter *c = make(4, 0, 0);
    uint8_t long_word[200];
    memset(long_word, 'q', sizeof long_word);
    ef_counter_add(c, long_word, sizeof long_word, 2);
    ef_counter_add(c, (const uint8_t *)"x", 1, 70000);
    ef_counter_add(c, (const uint8_t *)"\0yz", 3, 1);
    ptrdiff_t n = ef_counter_serialize(c, buf, cap);
    ef_counter_free(c);
    return n > 0 ? (size_t)n : 0;
}

/* dst's whole state, as a serialized buffer sorted by export (to compare before and after). */
static size_t snapshot(const ef_counter *c, uint8_t *buf, size_t cap) {
    size_t n = ef_counter_distinct(c), o = 0;
    ef_word_count *out = malloc((n + 1) * sizeof *out);
    ef_counter_export(c, out, n);
    for (size_t i = 0; i < n && o + out[i].word.len + 16 < cap; i++) {
        memcpy(buf + o, out[i].word.ptr, out[i].word.len);
        o += out[i].word.len;
        memcpy(buf + o, &out[i].count, 8);
        o += 8;
    }
    free(out);
    return o;
}

static int unchanged(const ef_counter *c, const uint8_t *snap, size_t snap_len) {
    uint8_t now[4096];
    size_t n = snapshot(c, now, sizeof now);
    return n == snap_len && memcmp(now, snap, n) == 0;
}

static ef_counter *dst_with_content(void) {
    ef_counter *d = make(3, 0, 1);
    ef_counter_add(d, (const uint8_t *)"x", 1, 5);
    ef_counter_add(d, (const uint8_t *)"keep", 4, 9);
    return d;
}

static void test_count_deserialize_truncated(ef_t *t) {
    uint8_t buf[512], snap[4096];
    size_t len = valid_buffer(buf, sizeof buf);
    CHECK(t, len > 200);
    ef_counter *d = dst_with_content();
    size_t sl = snapshot(d, snap, sizeof snap);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: over-reads are caught */
        memcpy(copy, buf, cut);
        ptrdiff_t rc = ef_counter_deserialize(d, copy, cut);
        free(copy);
        CHECK(t, rc < 0);
        CHECK(t, unchanged(d, snap, sl));
    }
    /* a byte too many */
    uint8_t more[513];
    memcpy(more, buf, len);
    more[len] = 0;
    CHECK_EQ(t, ef_counter_deserialize(d, more, len + 1), EF_EFORMAT);
    CHECK(t, unchanged(d, snap, sl));
    /* the whole buffer works, and adds */
    CHECK_EQ(t, ef_counter_deserialize(d, buf, len), 3);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"x", 1), 70005);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"keep", 4), 9);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"\0yz", 3), 1);
    ef_counter_free(d);
}

static void test_count_deserialize_corrupt(ef_t *t) {
    uint64_t s = 99;
    uint8_t buf[512], snap[4096], bad[512];
    size_t len = valid_buffer(buf, sizeof buf);
    ef_counter *d = dst_with_content();
    size_t sl = snapshot(d, snap, sizeof snap);
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(bad, buf, len);
        int flips = 1 + (int)(ef_test_rand(&s) % 3);
        for (int f = 0; f < flips; f++) {
            /* mostly hit the header and varints, where a flip changes the structure */
            size_t at = ef_test_rand(&s) % 2 ? ef_test_rand(&s) % 12 : ef_test_rand(&s) % len;
            bad[at] ^= (uint8_t)(1u << (ef_test_rand(&s) % 8));
        }
        uint8_t *copy = malloc(len);
        memcpy(copy, bad, len);
        ef_counter *e = dst_with_content();
        ptrdiff_t rc = ef_counter_deserialize(e, copy, len);
        free(copy);
        if (rc >= 0) {
            ok++;
            CHECK(t, rc <= 3);
        } else {
            failed++;
            /* EF_EVERSION: one bit turns "EFCT" into "EFCP", whose version byte is then 3 */
            CHECK(t, rc == EF_EFORMAT || rc == EF_EBADMAGIC || rc == EF_EVERSION);
            CHECK(t, unchanged(e, snap, sl));
        }
        ef_counter_free(e);
    }
    CHECK(t, ok > 0 && failed > 0);
    ef_counter_free(d);
}

static void test_count_deserialize_malformed(ef_t *t) {
    ef_counter *d = dst_with_content();
    uint8_t snap[4096];
    size_t sl = snapshot(d, snap, sizeof snap);
    struct {
        const char *what;
        uint8_t bytes[32];
        size_t len;
        ptrdiff_t want;
    } cases[] = {
        {"bad magic", {'E', 'F', 'C', 'X', 0, 0, 0, 0}, 8, EF_EBADMAGIC},
        {"other magic", {'E', 'F', 'P', 'B', 1, 0, 0, 0, 1, 'a', 1}, 11, EF_EBADMAGIC},
        {"short header", {'E', 'F', 'C'}, 3, EF_EFORMAT},
        {"no count", {'E', 'F', 'C', 'T', 0, 0}, 6, EF_EFORMAT},
        {"huge length varint",
         {'E',  'F',  'C',  'T',  1,    0,    0,    0,    0xff, 0xff,
          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a',  1},
         20,
         EF_EFORMAT},
        {"length past the end", {'E', 'F', 'C', 'T', 1, 0, 0, 0, 5, 'a', 'b', 1}, 12, EF_EFORMAT},
        {"11-byte varint",
         {'E',  'F',  'C',  'T',  1,    0,    0,    0,    1,    'a', 0x81,
          0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
         21,
         EF_EFORMAT},
        {"varint over 64 bits",
         {'E',  'F',  'C',  'T',  1,    0,    0,    0,    1,    'a',
          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
         20,
         EF_EFORMAT},
        {"zero-length word", {'E', 'F', 'C', 'T', 1, 0, 0, 0, 0, 1}, 10, EF_EFORMAT},
        {"zero count", {'E', 'F', 'C', 'T', 1, 0, 0, 0, 1, 'a', 0}, 11, EF_EFORMAT},
        {"count too high", {'E', 'F', 'C', 'T', 2, 0, 0, 0, 1, 'a', 1}, 11, EF_EFORMAT},
        {"count too low", {'E', 'F', 'C', 'T', 1, 0, 0, 0, 1, 'a', 1, 1, 'b', 1}, 14, EF_EFORMAT},
        {"entry count huge",
         {'E', 'F', 'C', 'T', 0xff, 0xff, 0xff, 0xff, 1, 'a', 1},
         11,
         EF_EFORMAT},
        {"second entry bad",
         {'E', 'F', 'C', 'T', 2, 0, 0, 0, 1, 'a', 1, 1, 'b', 0},
         14,
         EF_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ptrdiff_t rc = ef_counter_deserialize(d, cases[i].bytes, cases[i].len);
        if (rc != cases[i].want)
            fprintf(stderr, "    case \"%s\": got %td\n", cases[i].what, rc);
        CHECK_EQ(t, rc, cases[i].want);
        CHECK(t, unchanged(d, snap, sl));
    }
    /* the largest count a varint holds, and a non-minimal varint, are fine */
    static const uint8_t max[] = {'E',  'F',  'C',  'T',  2,    0,    0,    0,    1,
                                  'm',  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0x01, 0x81, 0x00, 'n',  0x82, 0x00};
    ef_counter *e = make(1, 0, 0);
    /* both: their sum passes 2^64 - 1, refused whole */
    CHECK_EQ(t, ef_counter_deserialize(e, max, sizeof max), EF_EOVERFLOW);
    CHECK_EQ(t, ef_counter_distinct(e), 0);
    uint8_t one[sizeof max];
    memcpy(one, max, sizeof max);
    one[4] = 1; /* "m" alone */
    CHECK_EQ(t, ef_counter_deserialize(e, one, 20), 1);
    CHECK(t, ef_counter_get(e, (const uint8_t *)"m", 1) == UINT64_MAX);
    /* adding to the maximum is refused rather than saturated or wrapped */
    CHECK_EQ(t, ef_counter_deserialize(e, one, 20), EF_EOVERFLOW);
    CHECK(t, ef_counter_get(e, (const uint8_t *)"m", 1) == UINT64_MAX);
    CHECK(t, ef_counter_total(e) == UINT64_MAX);
    memcpy(one + 8, max + 20, sizeof max - 20); /* "n" alone, with non-minimal varints */
    ef_counter_clear(e);
    CHECK_EQ(t, ef_counter_deserialize(e, one, 8 + sizeof max - 20), 1);
    CHECK_EQ(t, ef_counter_get(e, (const uint8_t *)"n", 1), 2);
    CHECK_EQ(t, ef_counter_deserialize(NULL, max, sizeof max), EF_EINVAL);
    CHECK_EQ(t, ef_counter_deserialize(e, NULL, 1), EF_EINVAL);
    ef_counter_free(e);
    ef_counter_free(d);
}

static void test_count_export_order(ef_t *t) {
    ef_counter *c = make(7, 0, 0);
    static const char *words[] = {"b", "a", "ab", "aa", "B", "\xff", "a\0", "c", "zz", "z"};
    static const size_t lens[] = {1, 1, 2, 2, 1, 1, 2, 1, 2, 1};
    static const uint64_t counts[] = {3, 3, 3, 3, 3, 3, 3, 9, 1, 1};
    for (size_t i = 0; i < 10; i++)
        CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)words[i], lens[i], counts[i]), EF_OK);
    /* count descending; ties by bytes (unsigned), a prefix first */
    static const char *want[] = {"c", "B", "a", "a\0", "aa", "ab", "b", "\xff", "z", "zz"};
    static const size_t want_len[] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2};
    ef_word_count out[12];
    CHECK_EQ(t, ef_counter_export(c, out, 12), 10);
    for (size_t i = 0; i < 10; i++) {
        CHECK_EQ(t, out[i].word.len, want_len[i]);
        CHECK(t, memcmp(out[i].word.ptr, want[i], want_len[i]) == 0);
    }
    /* the top cap, for every cap */
    for (size_t cap = 0; cap <= 11; cap++) {
        ef_word_count top[12];
        ptrdiff_t n = ef_counter_export(c, top, cap);
        CHECK_EQ(t, n, cap < 10 ? cap : 10);
        for (ptrdiff_t i = 0; i < n; i++)
            CHECK(t, top[i].word.len == out[i].word.len && top[i].count == out[i].count &&
                         memcmp(top[i].word.ptr, out[i].word.ptr, top[i].word.len) == 0);
    }
    CHECK_EQ(t, ef_counter_export(NULL, out, 1), EF_EINVAL);
    CHECK_EQ(t, ef_counter_export(c, NULL, 1), EF_EINVAL);
    ef_counter_free(c);
}

static void test_count_export_top(ef_t *t) {
    uint64_t s = 21;
    uint8_t *text = malloc(6000);
    for (int iter = 0; iter < 20; iter++) {
        size_t len = gen_text(&s, text, 500 + ef_test_rand(&s) % 5500);
        ref r = ref_build(text, len, 1);
        ef_counter *c = count_text(text, len, 16, EF_COUNT_LOWERCASE, 0, &s);
        ef_word_count *out = malloc((r.n + 1) * sizeof *out);
        size_t caps[] = {1, 2, 3, r.n / 2, r.n - 1, 1 + ef_test_rand(&s) % r.n};
        for (size_t k = 0; k < sizeof caps / sizeof *caps; k++) {
            size_t cap = caps[k];
            CHECK_EQ(t, ef_counter_export(c, out, cap), (ptrdiff_t)cap);
            for (size_t i = 0; i < cap; i++)
                CHECK(t, out[i].count == r.w[i].count && out[i].word.len == r.w[i].len &&
                             memcmp(out[i].word.ptr, r.w[i].ptr, r.w[i].len) == 0);
        }
        free(out);
        ef_counter_free(c);
        ref_free(&r);
    }
    free(text);
}

/* Thousands of words that share their first 8 bytes or differ only by NUL padding, with few
 * distinct counts: the sort's ties are settled past the prefix. */
static void test_count_export_shared_prefixes(ef_t *t) {
    uint64_t s = 17;
    size_t cap = 200000, len = 0;
    uint8_t *text = malloc(cap);
    static const char *stems[] = {"abcdefgh", "abcdefg", "abcdefgh\0", "a", "abcdefghabcdefgh"};
    static const size_t stem_len[] = {8, 7, 9, 1, 16};
    while (len < cap - 64) {
        int k = (int)(ef_test_rand(&s) % 5);
        memcpy(text + len, stems[k], stem_len[k]);
        len += stem_len[k];
        size_t suffix = ef_test_rand(&s) % 7;
        for (size_t i = 0; i < suffix; i++)
            text[len++] = "\0\xff"
                          "abAB"[ef_test_rand(&s) % 6];
        text[len++] = ' ';
    }
    for (uint32_t flags = 0; flags <= EF_COUNT_LOWERCASE; flags++) {
        ref r = ref_build(text, len, flags != 0);
        CHECK(t, r.n > 1000);
        ef_counter *c = count_text(text, len, 16, flags, 0, &s);
        matches_ref(t, c, &r);
        ef_word_count *out = malloc(r.n * sizeof *out);
        size_t k = r.n / 3;
        CHECK_EQ(t, ef_counter_export(c, out, k), (ptrdiff_t)k);
        for (size_t i = 0; i < k; i++)
            CHECK(t, out[i].count == r.w[i].count && out[i].word.len == r.w[i].len &&
                         memcmp(out[i].word.ptr, r.w[i].ptr, r.w[i].len) == 0);
        free(out);
        ef_counter_free(c);
        ref_free(&r);
    }
    free(text);
}

/* A large vocabulary (past the radix sort's threshold) whose counts use every byte of a count,
 * up to 2^40, with many ties and shared prefixes: the export is the reference order exactly. */
static void test_count_export_large_vocabulary(ef_t *t) {
    uint64_t s = 99;
    size_t n = 20000;
    ref_word *want = malloc(n * sizeof *want);
    uint8_t *bytes = malloc(n * 12);
    ef_counter *c = make(16, 0, 0);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *w = bytes + i * 12;
        size_t len = 1 + ef_test_rand(&s) % 12;
        for (size_t j = 0; j < len; j++)
            w[j] = j < 6 && i % 3 ? (uint8_t)"commonprefix"[j] : (uint8_t)(ef_test_rand(&s) % 5 + 'a');
        uint64_t kind = ef_test_rand(&s) % 4;
        uint64_t count = kind == 0 ? 1 + ef_test_rand(&s) % 3
                         : kind == 1 ? ef_test_rand(&s) % ((uint64_t)1 << 40) + 1
                                     : 1 + ef_test_rand(&s) % 70000;
        if (ef_counter_get(c, w, len))
            continue; /* a word made twice keeps its first count */
        CHECK_EQ(t, ef_counter_add(c, w, len, count), EF_OK);
        want[m++] = (ref_word){w, len, count};
    }
    qsort(want, m, sizeof *want, ref_export_qcmp);
    CHECK(t, m > 5000);
    ef_word_count *out = malloc(m * sizeof *out);
    CHECK_EQ(t, ef_counter_export(c, out, m), (ptrdiff_t)m);
    for (size_t i = 0; i < m; i++) {
        if (out[i].count != want[i].count || out[i].word.len != want[i].len ||
            memcmp(out[i].word.ptr, want[i].ptr, want[i].len) != 0) {
            CHECK(t, !"export entry differs from the reference");
            fprintf(stderr, "    at %zu of %zu\n", i, m);
            break;
        }
    }
    free(out);
    free(want);
    free(bytes);
    ef_counter_free(c);
}

static void test_count_get(ef_t *t) {
    ef_counter *c = make(16, EF_COUNT_LOWERCASE, 0);
    static const char in[] = "The quick brown fox jumps over the lazy dog THE End extraordinarily";
    CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)in, sizeof in - 1), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"extraordinarily", 15), 0); /* pending */
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"the", 3), 3);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"The", 3), 0); /* exact bytes */
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"th", 2), 0);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"thee", 4), 0);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"extraordinarily", 15), 1);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"extraordinarilx", 15), 0);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"", 0), 0);
    CHECK_EQ(t, ef_counter_get(NULL, (const uint8_t *)"the", 3), 0);
    ef_counter_free(c);
}

static void test_count_clear(ef_t *t) {
    ef_counter *c = make(7, 0, 0);
    uint8_t text[20000];
    size_t len = 0;
    for (uint32_t k = 0; k < 2000; k++)
        len += put_number_word(text + len, k);
    for (int round = 0; round < 3; round++) {
        CHECK_EQ(t, ef_counter_feed(c, text, len), EF_OK);
        CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)" dangling", 9), EF_OK);
        CHECK_EQ(t, ef_counter_distinct(c), 2000);
        ef_counter_clear(c); /* drops the pending word too */
        CHECK_EQ(t, ef_counter_distinct(c), 0);
        CHECK_EQ(t, ef_counter_total(c), 0);
        CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"W0", 2), 0);
        CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)"ing W0", 6), EF_OK);
        CHECK_EQ(t, ef_counter_finish(c), EF_OK);
        CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"ing", 3), 1);
        CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"danglingng", 10), 0);
        CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"W0", 2), 1);
        CHECK_EQ(t, ef_counter_distinct(c), 2);
        ef_counter_clear(c);
    }
    ef_counter_clear(NULL);
    ef_counter_free(c);
}

static void test_count_add(ef_t *t) {
    ef_counter *c = make(16, EF_COUNT_LOWERCASE, 0);
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"The", 3, 4), EF_OK); /* as given */
    CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)"The the ", 8), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"The", 3), 4);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"the", 3), 2);
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"the", 3, 0), EF_OK); /* nothing to add */
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"none", 4, 0), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"none", 4), 0);
    CHECK_EQ(t, ef_counter_distinct(c), 2);
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"x", 0, 1), EF_EINVAL);
    CHECK_EQ(t, ef_counter_add(c, NULL, 1, 1), EF_EINVAL);
    CHECK_EQ(t, ef_counter_add(NULL, (const uint8_t *)"x", 1, 1), EF_EINVAL);
    /* words with spaces are whole words here: add does not tokenize */
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"a b", 3, 2), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"a b", 3), 2);
    uint64_t before = ef_counter_total(c);
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"sat", 3, UINT64_MAX - before), EF_OK);
    CHECK(t, ef_counter_total(c) == UINT64_MAX);
    /* the total is at the limit: one more count, of any word, overflows and is refused */
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"sat", 3, 1), EF_EOVERFLOW);
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"new", 3, 1), EF_EOVERFLOW);
    CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)"x ", 2), EF_EOVERFLOW);
    CHECK(t, ef_counter_get(c, (const uint8_t *)"sat", 3) == UINT64_MAX - before);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"new", 3), 0);
    ef_counter_free(c);
}

static void test_count_create_options(ef_t *t) {
    ef_counter_options o = {.partitions = EF_COUNT_PARTITIONS_MAX + 1};
    CHECK(t, ef_counter_create(&o) == NULL);
    o = (ef_counter_options){.flags = 0x80};
    CHECK(t, ef_counter_create(&o) == NULL);
    o = (ef_counter_options){.partitions = EF_COUNT_PARTITIONS_MAX, .initial_capacity = 100000};
    ef_counter *c = ef_counter_create(&o);
    CHECK(t, c != NULL);
    CHECK_EQ(t, ef_counter_partitions(c), EF_COUNT_PARTITIONS_MAX);
    CHECK_EQ(t, ef_counter_feed(c, (const uint8_t *)"a b c a", 7), EF_OK);
    CHECK_EQ(t, ef_counter_finish(c), EF_OK);
    CHECK_EQ(t, ef_counter_get(c, (const uint8_t *)"a", 1), 2);
    ef_counter_free(c);
    CHECK_EQ(t, ef_counter_partitions(NULL), 0);
    CHECK_EQ(t, ef_counter_distinct(NULL), 0);
}

/* ---- partitioned serialization (EFCP) ---------------------------------------------------- */

/* Every word and count of a equals b's (export for export); 1 when they do. */
static int same_table(const ef_counter *a, const ef_counter *b) {
    size_t n = ef_counter_distinct(a);
    if (n != ef_counter_distinct(b))
        return 0;
    ef_word_count *x = malloc((n + 1) * sizeof *x), *y = malloc((n + 1) * sizeof *y);
    int same =
        ef_counter_export(a, x, n) == (ptrdiff_t)n && ef_counter_export(b, y, n) == (ptrdiff_t)n;
    for (size_t i = 0; same && i < n; i++)
        same = x[i].count == y[i].count && x[i].word.len == y[i].word.len &&
               memcmp(x[i].word.ptr, y[i].word.ptr, x[i].word.len) == 0;
    free(x);
    free(y);
    return same;
}

/* A copy of c with p partitions (0 = c's). */
static ef_counter *clone_counter(const ef_counter *c, uint32_t p) {
    ef_counter *d = make(p ? p : ef_counter_partitions(c), ef_counter_flags(c), 1);
    if (d && ef_counter_merge(d, c) != EF_OK) {
        ef_counter_free(d);
        return NULL;
    }
    return d;
}

/* c serialized as EFCP into a fresh exact-size buffer (over-reads are caught); *len its size. */
static uint8_t *efcp_of(const ef_counter *c, size_t *len) {
    *len = ef_counter_partitioned_size(c);
    uint8_t *buf = malloc(*len);
    if (buf && ef_counter_serialize_partitioned(c, buf, *len) != (ptrdiff_t)*len) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Check every section, then merge every section in a shuffled order: what a master does. */
static ptrdiff_t merge_all_sections(ef_counter *d, const uint8_t *buf, size_t len, uint64_t *s) {
    uint32_t np = 0;
    ptrdiff_t rc = ef_counter_partitioned_check(buf, len, &np), total = 0;
    if (rc < 0)
        return rc;
    for (uint32_t p = 0; p < np; p++)
        if ((rc = ef_counter_section_check(buf, len, p)) < 0)
            return rc;
    uint32_t start = (uint32_t)(ef_test_rand(s) % np);
    for (uint32_t p = 0; p < np; p++) {
        if ((rc = ef_counter_section_merge(d, buf, len, (start + p) % np)) < 0)
            return rc;
        total += rc;
    }
    return total;
}

static void test_count_partitioned_roundtrip(ef_t *t) {
    uint64_t s = 31;
    uint8_t *text = malloc(6000);
    static const uint32_t parts[] = {1, 2, 3, 7, 16, 61, EF_COUNT_PARTITIONS_MAX};
    for (int iter = 0; iter < 28; iter++) {
        uint32_t np = parts[iter % 7];
        size_t len = gen_text(&s, text, 1 + ef_test_rand(&s) % 6000);
        uint32_t flags = (uint32_t)(iter & 1);
        ref r = ref_build(text, len, flags != 0);
        ef_counter *c = count_text(text, len, np, flags, 0, &s);
        size_t sz = ef_counter_partitioned_size(c);
        CHECK_EQ(t, sz, 16 + 24 * (size_t)np + ef_counter_serialized_size(c) - 8);
        uint8_t *buf = malloc(sz);
        CHECK_EQ(t, ef_counter_serialize_partitioned(c, buf, sz - 1), EF_ESPACE);
        CHECK_EQ(t, ef_counter_serialize_partitioned(c, buf, sz), (ptrdiff_t)sz);
        CHECK(t, memcmp(buf, "EFCP", 4) == 0 && buf[4] == EF_COUNT_PART_VERSION);
        CHECK_EQ(t, buf[12], flags);
        /* the header and each section on their own */
        uint32_t got = 0;
        CHECK_EQ(t, ef_counter_partitioned_check(buf, sz, &got), np);
        CHECK_EQ(t, got, np);
        CHECK_EQ(t, ef_counter_partitioned_check(buf, sz, NULL), np);
        ptrdiff_t sum = 0;
        for (uint32_t p = 0; p < np; p++) {
            ptrdiff_t n = ef_counter_section_check(buf, sz, p);
            CHECK(t, n >= 0);
            sum += n;
        }
        CHECK_EQ(t, sum, (ptrdiff_t)r.n);
        CHECK_EQ(t, ef_counter_section_check(buf, sz, np), EF_EINVAL);
        /* section by section into an empty table of the same shape equals the reference */
        ef_counter *d = make(np, flags, 1);
        CHECK_EQ(t, merge_all_sections(d, buf, sz, &s), (ptrdiff_t)r.n);
        matches_ref(t, d, &r);
        /* ... and adds into one that has counts: twice the reference */
        CHECK_EQ(t, merge_all_sections(d, buf, sz, &s), (ptrdiff_t)r.n);
        CHECK_EQ(t, ef_counter_total(d), 2 * ref_total(&r));
        /* deserialize takes EFCP whatever the receiver's partition count */
        ef_counter *e = make(1 + (uint32_t)(ef_test_rand(&s) % 20), 0, 1);
        CHECK_EQ(t, ef_counter_deserialize(e, buf, sz), (ptrdiff_t)r.n);
        matches_ref(t, e, &r);
        ef_counter *f = make(np, 0, 1);
        CHECK_EQ(t, ef_counter_deserialize(f, buf, sz), (ptrdiff_t)r.n);
        matches_ref(t, f, &r);
        /* a receiver of another shape cannot take sections: nothing added */
        ef_counter *g = make(np + 1, 0, 1);
        CHECK_EQ(t, ef_counter_section_merge(g, buf, sz, 0), EF_EINVAL);
        CHECK_EQ(t, ef_counter_distinct(g), 0);
        /* EFPC and EFCT carry the same entries: the same table either way */
        size_t tl = ef_counter_serialized_size(c);
        uint8_t *tb = malloc(tl);
        CHECK_EQ(t, ef_counter_serialize(c, tb, tl), (ptrdiff_t)tl);
        ef_counter *h = make(np, 0, 1);
        CHECK_EQ(t, ef_counter_deserialize(h, tb, tl), (ptrdiff_t)r.n);
        CHECK(t, same_table(h, f));
        free(tb);
        ef_counter_free(c);
        ef_counter_free(d);
        ef_counter_free(e);
        ef_counter_free(f);
        ef_counter_free(g);
        ef_counter_free(h);
        free(buf);
        ref_free(&r);
    }
    free(text);
}

static void test_count_partitioned_edges(ef_t *t) {
    /* empty tables: header and table only, every section empty */
    for (uint32_t np = 1; np <= 5; np++) {
        ef_counter *c = make(np, 0, 0);
        size_t len;
        uint8_t *buf = efcp_of(c, &len);
        CHECK_EQ(t, len, 16 + 24 * (size_t)np);
        CHECK_EQ(t, ef_counter_partitioned_check(buf, len, NULL), np);
        for (uint32_t p = 0; p < np; p++) {
            CHECK_EQ(t, ef_counter_section_check(buf, len, p), 0);
            CHECK_EQ(t, ef_counter_section_merge(c, buf, len, p), 0);
        }
        CHECK_EQ(t, ef_counter_deserialize(c, buf, len), 0);
        CHECK_EQ(t, ef_counter_distinct(c), 0);
        free(buf);
        ef_counter_free(c);
    }
    /* a total of UINT64_MAX - 1, a 9-byte count varint, a 2^16-byte key, NUL bytes, a word "a"
     * and "a\0" */
    ef_counter *c = make(4, 0, 0);
    uint8_t *longw = malloc(65536);
    memset(longw, 'L', 65536);
    ef_counter_add(c, longw, 65536, 3);
    CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"big", 3, UINT64_MAX - 7), EF_OK);
    ef_counter_add(c, (const uint8_t *)"a", 1, 1);
    ef_counter_add(c, (const uint8_t *)"a\0", 2, 2);
    CHECK(t, ef_counter_total(c) == UINT64_MAX - 1);
    size_t len;
    uint8_t *buf = efcp_of(c, &len);
    ef_counter *d = make(4, 0, 0);
    uint64_t s = 3;
    CHECK_EQ(t, merge_all_sections(d, buf, len, &s), 4);
    CHECK(t, ef_counter_get(d, (const uint8_t *)"big", 3) == UINT64_MAX - 7);
    CHECK_EQ(t, ef_counter_get(d, longw, 65536), 3);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"a", 1), 1);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"a\0", 2), 2);
    /* a second copy overflows: refused whole, never saturated */
    CHECK_EQ(t, ef_counter_deserialize(d, buf, len), EF_EOVERFLOW);
    CHECK_EQ(t, ef_counter_deserialize(c, buf, len), EF_EOVERFLOW);
    CHECK(t, ef_counter_get(d, (const uint8_t *)"big", 3) == UINT64_MAX - 7);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"a", 1), 1);
    CHECK(t, ef_counter_total(d) == UINT64_MAX - 1);
    /* arguments */
    CHECK_EQ(t, ef_counter_partitioned_size(NULL), 0);
    CHECK_EQ(t, ef_counter_serialize_partitioned(NULL, buf, len), EF_EINVAL);
    CHECK_EQ(t, ef_counter_serialize_partitioned(c, NULL, 5), EF_EINVAL);
    CHECK_EQ(t, ef_counter_serialize_partitioned(c, NULL, 0), EF_ESPACE);
    CHECK_EQ(t, ef_counter_partitioned_check(NULL, 5, NULL), EF_EINVAL);
    CHECK_EQ(t, ef_counter_partitioned_check(NULL, 0, NULL), EF_EFORMAT);
    CHECK_EQ(t, ef_counter_section_check(NULL, 5, 0), EF_EINVAL);
    CHECK_EQ(t, ef_counter_section_merge(NULL, buf, len, 0), EF_EINVAL);
    CHECK_EQ(t, ef_counter_section_merge(d, NULL, 3, 0), EF_EINVAL);
    CHECK_EQ(t, ef_counter_section_merge(d, buf, len, 4), EF_EINVAL);
    CHECK_EQ(t, ef_counter_section_merge(d, buf, len, UINT32_MAX), EF_EINVAL);
    /* EFCT is not EFCP, and the other way round the sections are no EFCT body */
    uint8_t efct[64];
    ptrdiff_t tl = ef_counter_serialize(d, efct, sizeof efct);
    if (tl > 0) {
        CHECK_EQ(t, ef_counter_partitioned_check(efct, (size_t)tl, NULL), EF_EBADMAGIC);
        CHECK_EQ(t, ef_counter_section_check(efct, (size_t)tl, 0), EF_EBADMAGIC);
    }
    free(longw);
    free(buf);
    ef_counter_free(c);
    ef_counter_free(d);
}

/* Build an EFCP buffer by hand from np sections' bytes and entry counts; returns its length. */
static size_t efcp_build(uint8_t *out, uint32_t np, uint32_t flags, const uint8_t *const *secs,
                         const size_t *lens, const uint64_t *entries) {
    memcpy(out, "EFCP", 4);
    out[4] = EF_COUNT_PART_VERSION;
    out[5] = out[6] = out[7] = 0;
    memcpy(out + 8, &np, 4);
    memcpy(out + 12, &flags, 4);
    uint64_t at = 16 + 24 * (uint64_t)np;
    for (uint32_t p = 0; p < np; p++) {
        uint64_t l = lens[p];
        memcpy(out + 16 + 24 * p, &at, 8);
        memcpy(out + 24 + 24 * p, &l, 8);
        memcpy(out + 32 + 24 * p, &entries[p], 8);
        memcpy(out + at, secs[p], lens[p]);
        at += l;
    }
    return (size_t)at;
}

/* Which of np partitions a word lands in, found through the format itself. */
static uint32_t partition_of(const uint8_t *w, size_t wl, uint32_t np) {
    ef_counter *c = make(np, 0, 0);
    ef_counter_add(c, w, wl, 1);
    size_t len;
    uint8_t *buf = efcp_of(c, &len);
    uint32_t found = UINT32_MAX;
    for (uint32_t p = 0; p < np; p++)
        if (ef_counter_section_check(buf, len, p) == 1)
            found = p;
    free(buf);
    ef_counter_free(c);
    return found;
}

/* Expect rc from the whole-buffer check (or deserialize's code where the header passes) and
 * from deserialize and every section merge, with dst unchanged. */
static void expect_refused(ef_t *t, const char *what, const uint8_t *bytes, size_t len,
                           ptrdiff_t want_check, ptrdiff_t want_deserialize) {
    uint8_t *copy = malloc(len ? len : 1); /* exact size: over-reads are caught */
    memcpy(copy, bytes, len);
    ef_counter *d = dst_with_content();
    ef_counter *before = clone_counter(d, 0);
    ptrdiff_t rc = ef_counter_partitioned_check(copy, len, NULL);
    if (rc != want_check)
        fprintf(stderr, "    case \"%s\": partitioned_check %td\n", what, rc);
    CHECK_EQ(t, rc, want_check);
    rc = ef_counter_deserialize(d, copy, len);
    if (rc != want_deserialize)
        fprintf(stderr, "    case \"%s\": deserialize %td\n", what, rc);
    CHECK_EQ(t, rc, want_deserialize);
    if (rc < 0)
        CHECK(t, same_table(d, before));
    ef_counter_free(d);
    d = clone_counter(before, 0);
    /* sections stand alone: one may merge while another is bad, but a bad one adds nothing */
    for (uint32_t p = 0; p < 3; p++) {
        ef_counter *e = clone_counter(d, 0);
        ptrdiff_t want = ef_counter_section_check(copy, len, p);
        rc = ef_counter_section_merge(e, copy, len, p);
        CHECK_EQ(t, rc, want == EF_EINVAL ? EF_EINVAL : want); /* same verdict */
        if (rc < 0)
            CHECK(t, same_table(e, before));
        ef_counter_free(e);
    }
    ef_counter_free(before);
    ef_counter_free(d);
    free(copy);
}

static void test_count_partitioned_malformed(ef_t *t) {
    /* three sections (dst_with_content has 3 partitions), built by hand */
    static const uint8_t *const w[] = {(const uint8_t *)"alpha", (const uint8_t *)"beta",
                                       (const uint8_t *)"gamma", (const uint8_t *)"delta",
                                       (const uint8_t *)"eps",   (const uint8_t *)"zeta"};
    uint8_t sec[3][64];
    size_t lens[3] = {0, 0, 0};
    uint64_t ents[3] = {0, 0, 0};
    uint32_t home[6];
    for (int i = 0; i < 6; i++) {
        size_t wl = strlen((const char *)w[i]);
        uint32_t p = home[i] = partition_of(w[i], wl, 3);
        CHECK(t, p < 3);
        if (p >= 3)
            return;
        sec[p][lens[p]++] = (uint8_t)wl;
        memcpy(sec[p] + lens[p], w[i], wl);
        lens[p] += wl;
        sec[p][lens[p]++] = (uint8_t)(i + 1);
        ents[p]++;
    }
    const uint8_t *secs[3] = {sec[0], sec[1], sec[2]};
    uint8_t good[512], bad[600];
    size_t gl = efcp_build(good, 3, 0, secs, lens, ents);
    ef_counter *d = dst_with_content();
    CHECK_EQ(t, ef_counter_deserialize(d, good, gl), 6);
    CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"zeta", 4), 6);
    ef_counter_free(d);

#define MUTATE(what, code, want_check, want_des)                                                   \
    do {                                                                                           \
        size_t bl = gl;                                                                            \
        memcpy(bad, good, gl);                                                                     \
        code;                                                                                      \
        expect_refused(t, what, bad, bl, want_check, want_des);                                    \
    } while (0)

    MUTATE("bad magic", bad[3] = 'X', EF_EBADMAGIC, EF_EBADMAGIC);
    MUTATE("version 2", bad[4] = 2, EF_EVERSION, EF_EVERSION);
    MUTATE("version 0", bad[4] = 0, EF_EVERSION, EF_EVERSION);
    MUTATE("reserved byte", bad[5] = 1, EF_EFORMAT, EF_EFORMAT);
    MUTATE("reserved u16", bad[7] = 0x80, EF_EFORMAT, EF_EFORMAT);
    MUTATE("no partitions", memset(bad + 8, 0, 4), EF_EFORMAT, EF_EFORMAT);
    MUTATE("too many partitions", (bad[8] = 0x01, bad[9] = 0x04), EF_EFORMAT, EF_EFORMAT);
    MUTATE("partitions past the table", bad[8] = 0xff, EF_EFORMAT, EF_EFORMAT);
    MUTATE("unknown flag", bad[12] = 2, EF_EFORMAT, EF_EFORMAT);
    MUTATE("high flag", bad[15] = 0x80, EF_EFORMAT, EF_EFORMAT);
    MUTATE("header only", bl = 16, EF_EFORMAT, EF_EFORMAT);
    MUTATE("table cut", bl = 16 + 24 * 2 + 5, EF_EFORMAT, EF_EFORMAT);
    MUTATE("short header", bl = 12, EF_EFORMAT, EF_EFORMAT);
    MUTATE("three bytes", bl = 3, EF_EFORMAT, EF_EFORMAT);
    MUTATE("trailing byte", bad[bl++] = 0, EF_EFORMAT, EF_EFORMAT);
    MUTATE("last byte cut", bl--, EF_EFORMAT, EF_EFORMAT);
    /* the table: offsets into the header, gaps, overlaps, lengths past the end */
    MUTATE("offset into the table", bad[16] = 8, EF_EFORMAT, EF_EFORMAT);
    MUTATE("offset past the end", bad[16 + 24 * 2 + 6] = 0x40, EF_EFORMAT, EF_EFORMAT);
    MUTATE("length past the end", bad[24 + 24 * 2 + 7] = 0x01, EF_EFORMAT, EF_EFORMAT);
    MUTATE("huge length", memset(bad + 24, 0xff, 8), EF_EFORMAT, EF_EFORMAT);
    MUTATE("huge offset", memset(bad + 16 + 24, 0xff, 8), EF_EFORMAT, EF_EFORMAT);
    MUTATE("gap (section 1 starts late)", (bad[16 + 24]++, bad[24 + 24]--), EF_EFORMAT, EF_EFORMAT);
    MUTATE("overlap (section 0 one byte longer)", bad[24]++, EF_EFORMAT, EF_EFORMAT);
    MUTATE(
        "sections swapped",
        do {
            uint8_t tmp[24];
            memcpy(tmp, bad + 16, 24);
            memcpy(bad + 16, bad + 40, 24);
            memcpy(bad + 40, tmp, 24);
        } while (0),
        EF_EFORMAT, EF_EFORMAT);
    MUTATE("entry count impossible for the length", memset(bad + 32, 0x7f, 8), EF_EFORMAT,
           EF_EFORMAT);
    /* sections whose entries disagree with the table pass the table check only */
    for (uint32_t p = 0; p < 3; p++) {
        if (ents[p] == 0)
            continue;
        MUTATE("one entry more than there is", bad[32 + 24 * p]++,
               ents[p] + 1 <= lens[p] / 3 ? 3 : EF_EFORMAT, EF_EFORMAT);
        MUTATE("one entry fewer than there is", bad[32 + 24 * p]--, 3, EF_EFORMAT);
        size_t off = 16 + 24 * 3 + (p > 0 ? lens[0] : 0) + (p > 1 ? lens[1] : 0);
        MUTATE("zero-length key", bad[off] = 0, 3, EF_EFORMAT);
        MUTATE("key past the section", bad[off] = 0x7f, 3, EF_EFORMAT);
        MUTATE("unterminated varint", bad[off] = 0x85, 3, EF_EFORMAT);
        MUTATE("zero count", bad[off + 1 + bad[off]] = 0, 3, EF_EFORMAT);
        /* a key rewritten in place: refused unless it happens to hash to the same partition */
        uint8_t key[64];
        size_t kl = good[off];
        memcpy(key, good + off + 1, kl);
        key[0] = 'z';
        MUTATE("key rewritten", bad[off + 1] = 'z', 3,
               partition_of(key, kl, 3) == p ? 6 : EF_EFORMAT);
    }
#undef MUTATE

    /* a key in a section it does not hash to: every reader refuses, nothing is added */
    uint32_t p0 = home[0], other = (p0 + 1) % 3;
    uint8_t moved[3][64];
    size_t mlens[3] = {0, 0, 0};
    uint64_t ments[3] = {0, 0, 0};
    for (int i = 0; i < 6; i++) {
        size_t wl = strlen((const char *)w[i]);
        uint32_t p = i == 0 ? other : home[i];
        moved[p][mlens[p]++] = (uint8_t)wl;
        memcpy(moved[p] + mlens[p], w[i], wl);
        mlens[p] += wl;
        moved[p][mlens[p]++] = 1;
        ments[p]++;
    }
    const uint8_t *msecs[3] = {moved[0], moved[1], moved[2]};
    size_t ml = efcp_build(bad, 3, 0, msecs, mlens, ments);
    CHECK_EQ(t, ef_counter_section_check(bad, ml, other), EF_EFORMAT);
    expect_refused(t, "key in a foreign section", bad, ml, 3, EF_EFORMAT);
    d = dst_with_content();
    ef_counter *before = clone_counter(d, 0);
    CHECK_EQ(t, ef_counter_section_merge(d, bad, ml, other), EF_EFORMAT);
    CHECK(t, same_table(d, before));
    CHECK_EQ(t, ef_counter_get(d, w[0], 5), 0);
    ef_counter_free(before);
    ef_counter_free(d);
}

/* Every prefix, and random corruption: a refused buffer leaves the table as it was, and a merge
 * of sections that all passed their checks never fails. */
static void test_count_partitioned_corrupt(ef_t *t) {
    uint64_t s = 77;
    uint8_t *text = malloc(1500);
    size_t tl = gen_text(&s, text, 1500);
    ef_counter *c = count_text(text, tl, 5, 0, 0, &s);
    ef_counter_add(c, (const uint8_t *)"big", 3, (uint64_t)1 << 60);
    size_t len;
    uint8_t *buf = efcp_of(c, &len);
    ef_counter *d = dst_with_content();
    ef_counter *keep = clone_counter(d, 5), *before = clone_counter(d, 0);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        CHECK(t, ef_counter_partitioned_check(copy, cut, NULL) < 0);
        CHECK(t, ef_counter_deserialize(d, copy, cut) < 0);
        free(copy);
    }
    CHECK(t, same_table(d, before));
    int ok = 0, failed = 0;
    uint8_t *bad = malloc(len);
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(bad, buf, len);
        int flips = 1 + (int)(ef_test_rand(&s) % 3);
        for (int f = 0; f < flips; f++) {
            /* mostly the header and table, where a flip changes the structure */
            size_t hdr = 16 + 24 * 5;
            size_t at = ef_test_rand(&s) % 2 ? ef_test_rand(&s) % hdr : ef_test_rand(&s) % len;
            bad[at] ^= (uint8_t)(1u << (ef_test_rand(&s) % 8));
        }
        ef_counter *e = clone_counter(keep, 0), *e2 = clone_counter(keep, 0);
        ptrdiff_t rc = ef_counter_deserialize(e, bad, len);
        if (rc >= 0) {
            ok++;
        } else {
            failed++;
            CHECK(t, rc == EF_EFORMAT || rc == EF_EBADMAGIC || rc == EF_EVERSION);
            CHECK(t, same_table(e, keep));
        }
        /* the master's way: all checks, then all merges; the same outcome as deserialize */
        ptrdiff_t rc2 = merge_all_sections(e2, bad, len, &s);
        CHECK_EQ(t, rc2 >= 0, rc >= 0);
        if (rc2 >= 0)
            CHECK(t, same_table(e, e2));
        else
            CHECK(t, same_table(e2, keep));
        /* a merge alone, unchecked, adds its whole section or nothing */
        ef_counter *e3 = clone_counter(keep, 0);
        uint32_t p = (uint32_t)(ef_test_rand(&s) % 5);
        ptrdiff_t one = ef_counter_section_merge(e3, bad, len, p);
        if (one < 0)
            CHECK(t, same_table(e3, keep));
        else
            CHECK_EQ(t, one, ef_counter_section_check(bad, len, p));
        ef_counter_free(e);
        ef_counter_free(e2);
        ef_counter_free(e3);
    }
    CHECK(t, ok > 0 && failed > 0);
    free(bad);
    free(buf);
    free(text);
    ef_counter_free(c);
    ef_counter_free(d);
    ef_counter_free(keep);
    ef_counter_free(before);
}

typedef struct section_job {
    ef_counter *dst;
    const uint8_t *buf;
    size_t len;
    uint32_t first, step, parts;
    int check; /* 1: check only */
    ptrdiff_t entries;
    int rc;
} section_job;

static void *section_worker(void *arg) {
    section_job *j = arg;
    for (uint32_t p = j->first; p < j->parts && j->rc == EF_OK; p += j->step) {
        ptrdiff_t n = j->check ? ef_counter_section_check(j->buf, j->len, p)
                               : ef_counter_section_merge(j->dst, j->buf, j->len, p);
        if (n < 0)
            j->rc = (int)n;
        else
            j->entries += n;
    }
    return NULL;
}

/* The threading note: all sections checked in parallel, then merged in parallel. */
static void test_count_partitioned_threads(ef_t *t) {
    uint64_t s = 41;
    size_t cap = 80000;
    uint8_t *a = malloc(cap), *b = malloc(cap), *ab = malloc(2 * cap + 1);
    size_t la = gen_text(&s, a, cap), lb = gen_text(&s, b, cap);
    memcpy(ab, a, la);
    ab[la] = ' ';
    memcpy(ab + la + 1, b, lb);
    ref r = ref_build(ab, la + 1 + lb, 1);
    enum { PARTS = 13, THREADS = 4 };
    ef_counter *dst = count_text(a, la, PARTS, EF_COUNT_LOWERCASE, 0, &s);
    ef_counter *src = count_text(b, lb, PARTS, EF_COUNT_LOWERCASE, 0, &s);
    size_t len;
    uint8_t *buf = efcp_of(src, &len);
    CHECK_EQ(t, ef_counter_partitioned_check(buf, len, NULL), PARTS);
    for (int check = 1; check >= 0; check--) {
        pthread_t th[THREADS];
        section_job jobs[THREADS];
        for (uint32_t k = 0; k < THREADS; k++) {
            jobs[k] = (section_job){dst, buf, len, k, THREADS, PARTS, check, 0, EF_OK};
            CHECK_EQ(t, pthread_create(&th[k], NULL, section_worker, &jobs[k]), 0);
        }
        ptrdiff_t entries = 0;
        for (uint32_t k = 0; k < THREADS; k++) {
            pthread_join(th[k], NULL);
            CHECK_EQ(t, jobs[k].rc, EF_OK);
            entries += jobs[k].entries;
        }
        CHECK_EQ(t, entries, (ptrdiff_t)ef_counter_distinct(src));
    }
    matches_ref(t, dst, &r);
    free(buf);
    ef_counter_free(dst);
    ef_counter_free(src);
    ref_free(&r);
    free(a);
    free(b);
    free(ab);
}

/* Every merge path refuses a sum past 2^64 - 1 (EF_EOVERFLOW) and leaves dst as it was. */
static void test_count_overflow(ef_t *t) {
    static const uint32_t parts[] = {1, 4, 16};
    for (int i = 0; i < 3; i++) {
        ef_counter *a = make(parts[i], 0, 0), *b = make(parts[i], 0, 0), *other = make(7, 0, 0);
        CHECK_EQ(t, ef_counter_add(a, (const uint8_t *)"w", 1, UINT64_MAX / 2 + 1), EF_OK);
        CHECK_EQ(t, ef_counter_add(b, (const uint8_t *)"w", 1, UINT64_MAX / 2 + 1), EF_OK);
        CHECK_EQ(t, ef_counter_add(b, (const uint8_t *)"v", 1, 3), EF_OK);
        CHECK_EQ(t, ef_counter_merge(a, b), EF_EOVERFLOW);
        CHECK_EQ(t, ef_counter_merge(a, a), EF_EOVERFLOW); /* doubling */
        CHECK_EQ(t, ef_counter_merge(other, a), EF_OK);
        CHECK_EQ(t, ef_counter_merge(other, b), EF_EOVERFLOW); /* re-hashed path */
        /* two words, each fitting, whose sum does not: the total is what is kept in range */
        ef_counter *c = make(parts[i], 0, 0);
        CHECK_EQ(t, ef_counter_add(c, (const uint8_t *)"v", 1, UINT64_MAX / 2 + 1), EF_OK);
        CHECK_EQ(t, ef_counter_merge(c, a), EF_EOVERFLOW);
        for (uint32_t p = 0; p < parts[i]; p++) {
            int rc = ef_counter_merge_partition(a, b, p);
            CHECK(t, rc == EF_OK || rc == EF_EOVERFLOW);
        }
        CHECK(t, ef_counter_get(a, (const uint8_t *)"w", 1) == UINT64_MAX / 2 + 1);
        CHECK(t, ef_counter_get(a, (const uint8_t *)"v", 1) <= 3);
        /* serialized: EFCT and EFCP, whole and by section */
        size_t len = ef_counter_serialized_size(b);
        uint8_t *efct = malloc(len);
        CHECK_EQ(t, ef_counter_serialize(b, efct, len), (ptrdiff_t)len);
        ef_counter *d = make(parts[i], 0, 0);
        CHECK_EQ(t, ef_counter_add(d, (const uint8_t *)"w", 1, UINT64_MAX / 2 + 1), EF_OK);
        CHECK_EQ(t, ef_counter_deserialize(d, efct, len), EF_EOVERFLOW);
        size_t plen;
        uint8_t *efcp = efcp_of(b, &plen);
        CHECK_EQ(t, ef_counter_deserialize(d, efcp, plen), EF_EOVERFLOW);
        CHECK(t, ef_counter_get(d, (const uint8_t *)"w", 1) == UINT64_MAX / 2 + 1);
        CHECK_EQ(t, ef_counter_get(d, (const uint8_t *)"v", 1), 0);
        uint32_t pw = 0;
        for (uint32_t p = 0; p < parts[i]; p++)
            if (ef_counter_section_merge(d, efcp, plen, p) == EF_EOVERFLOW)
                pw++;
        CHECK_EQ(t, pw, 1); /* the section holding "w" */
        CHECK(t, ef_counter_get(d, (const uint8_t *)"w", 1) == UINT64_MAX / 2 + 1);
        /* bounds: total, entries and the longest word, read without merging */
        ef_counter_bounds bd;
        CHECK_EQ(t, ef_counter_table_bounds(efct, len, &bd), EF_OK);
        CHECK(t, bd.total == UINT64_MAX / 2 + 4 && bd.entries == 2 && bd.longest == 1);
        CHECK_EQ(t, ef_counter_table_bounds(efcp, plen, &bd), EF_OK);
        CHECK(t, bd.total == UINT64_MAX / 2 + 4 && bd.entries == 2 && bd.longest == 1);
        CHECK_EQ(t, ef_counter_table_bounds(efct, len - 1, &bd), EF_EFORMAT);
        CHECK_EQ(t, ef_counter_table_bounds(efcp, plen - 1, &bd), EF_EFORMAT);
        CHECK_EQ(t, ef_counter_table_bounds(NULL, 0, &bd), EF_EFORMAT);
        CHECK_EQ(t, ef_counter_table_bounds(efct, len, NULL), EF_EINVAL);
        free(efct);
        free(efcp);
        /* a table whose own counts sum past 2^64 - 1: 2^63 + 2^63, each entry a 10-byte varint */
        uint8_t bad[8 + 2 * 12] = {'E', 'F', 'C', 'T', 2, 0, 0, 0};
        size_t at = 8;
        for (int k = 0; k < 2; k++) {
            bad[at++] = 1;
            bad[at++] = (uint8_t)('p' + k);
            for (int j = 0; j < 9; j++)
                bad[at++] = 0x80;
            bad[at++] = 0x01; /* 2^63 */
        }
        ef_counter *e = make(parts[i], 0, 0);
        CHECK_EQ(t, ef_counter_table_bounds(bad, at, &bd), EF_EOVERFLOW);
        CHECK_EQ(t, ef_counter_deserialize(e, bad, at), EF_EOVERFLOW);
        CHECK_EQ(t, ef_counter_distinct(e), 0);
        /* one entry of 2^63 is fine; 2^64 - 1 alone is too */
        bad[4] = 1;
        CHECK_EQ(t, ef_counter_deserialize(e, bad, 8 + 12), 1);
        CHECK_EQ(t, ef_counter_deserialize(e, bad, 8 + 12), EF_EOVERFLOW);
        ef_counter_free(a);
        ef_counter_free(b);
        ef_counter_free(c);
        ef_counter_free(d);
        ef_counter_free(e);
        ef_counter_free(other);
    }
}

void suite_count(ef_t *t) {
    RUN(t, test_count_random_vs_reference);
    RUN(t, test_count_block_edges);
    RUN(t, test_count_large_inputs);
    RUN(t, test_count_exact_semantics);
    RUN(t, test_count_empty_and_whitespace);
    RUN(t, test_count_long_word);
    RUN(t, test_count_max_word);
    RUN(t, test_count_growth);
    RUN(t, test_count_merge);
    RUN(t, test_count_merge_threads);
    RUN(t, test_count_serialize_roundtrip);
    RUN(t, test_count_deserialize_truncated);
    RUN(t, test_count_deserialize_corrupt);
    RUN(t, test_count_deserialize_malformed);
    RUN(t, test_count_partitioned_roundtrip);
    RUN(t, test_count_partitioned_edges);
    RUN(t, test_count_partitioned_malformed);
    RUN(t, test_count_partitioned_corrupt);
    RUN(t, test_count_partitioned_threads);
    RUN(t, test_count_export_order);
    RUN(t, test_count_export_top);
    RUN(t, test_count_export_shared_prefixes);
    RUN(t, test_count_export_large_vocabulary);
    RUN(t, test_count_get);
    RUN(t, test_count_clear);
    RUN(t, test_count_add);
    RUN(t, test_count_overflow);
    RUN(t, test_count_create_options);
}
