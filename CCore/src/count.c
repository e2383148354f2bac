/* Word counting: a tokenizer feeding a hash-partitioned open-addressing count table.
 *
 * Layout. A fixed 64-bit hash h of a word's final bytes picks the partition from its high 32 bits
 * and the slot from its low bits, so the two choices do not correlate. Each partition is a
 * power-of-two array of 8-byte slots, (low 32 bits of h) << 32 | (entry index + 1), 0 = empty,
 * probed linearly and kept at most half full, over a dense entry array (count, the first 8 key
 * bytes, arena offset, length, hash) and a key arena. Slots stay small so the probe array of a
 * typical vocabulary sits in L2; the stored hash settles almost every mismatch without touching an
 * entry, and the stored head settles words of up to 8 bytes without touching the arena. Growth
 * re-indexes slots from the stored hash and never re-hashes a key or moves an entry, and merges,
 * serialization and export walk the dense entries instead of the sparse slots.
 *
 * Tokenizing. The input is cut in 64-byte blocks; a whitespace bit mask per block (AVX2 when the
 * CPU has it, SWAR otherwise) yields word starts and ends by shifts, so the loop runs once per
 * word rather than once per byte. Words are hashed 8 bytes at a time. Loads may run past a word's
 * end (then masked): blocks that leave 16 bytes of the caller's buffer after them skip bounds
 * checks, and only the last block or two of a feed pay for them. With EF_COUNT_LOWERCASE the input
 * is lowercased a window at a time into a scratch buffer (SIMD, at memory speed) and counted from
 * there, so the per-word path never lowercases; a window boundary inside a word is just another
 * feed boundary.
 *
 * Measured and dropped (Benchmarks/c/count_bench.c, cachegrind): 16-byte slots carrying the head
 * (fewer L1 misses, more instructions, slower), 16-byte keys inline in the entry (no length
 * branch up to 16 bytes, more instructions, no faster), hashing a block's words first and
 * prefetching their slots (slower: the table mostly hits L1/L2), and moving a frequent word into
 * its home slot on a hit (fewer mispredicts, more instructions, a wash).
 *
 * Threading: everything a merge writes lives in its partition (padded to a cache line), which is
 * what lets merges of different partitions of one dst run at once. */
#include "internal.h"

#include "count_internal.h"

#include <stdlib.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EF__COUNT_X86 1
#include <immintrin.h>
#endif

#define EF_LIKELY(x) __builtin_expect(!!(x), 1)
#define EF_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EF_NOINLINE __attribute__((noinline))
#define EF_INLINE static inline __attribute__((always_inline))

_Static_assert(EF_COUNT_MAGIC ==
                   ((uint32_t)'E' | (uint32_t)'F' << 8 | (uint32_t)'C' << 16 | (uint32_t)'T' << 24),
               "the magic reads \"EFCT\" on the wire");

#define PARTITIONS_DEFAULT 16
#define CAPACITY_DEFAULT 4096 /* distinct words in all: a page of text grows nothing */
#define PART_MIN_ENTRIES 8
#define PART_MAX_SLOTS ((size_t)1 << 31) /* entry indexes and tags share a u64 slot */
/* Export and re-hashing merges read a key's first 8 bytes in one load that may run past a short
 * key's end (then masked): the arena keeps this many bytes after its capacity for that load. */
#define ARENA_SLACK 8
#define WINDOW 16384 /* lowercasing scratch: small enough to stay in L1/L2 while it is counted */
#define SAFE_TAIL 16 /* bytes a block leaves after it for unchecked loads */

typedef struct ef__entry {
    uint64_t count;
    uint64_t head; /* first min(8, len) key bytes, zero-padded */
    uint64_t off;  /* key bytes in the partition's arena */
    uint32_t len;
    uint32_t hash; /* low 32 bits of the hash: the slot tag */
} ef__entry;
_Static_assert(sizeof(ef__entry) == 32, "two entries per cache line");

typedef struct ef__part {
    /* aligned: partitions merged on different threads never share a cache line */
    _Alignas(64) uint64_t *slots;
    ef__entry *entries;
    uint32_t mask;  /* slot count - 1 */
    uint32_t n;     /* entries in use */
    uint32_t max_n; /* entry capacity, = half the slots: reaching it grows both */
    uint8_t *arena;
    size_t arena_len, arena_cap; /* arena_cap excludes ARENA_SLACK */
    /* Sum of the counts, so a merge checks for overflow in O(P) rather than per word. Keeping it
     * costs one add per word counted: +1.3% instructions feeding 4 MB (valgrind lackey, 57.5M
     * before, 58.2M after), within the noise of timings on this machine. */
    uint64_t total;
} ef__part;

typedef int (*ef__feed_fn)(ef_counter *c, const uint8_t *data, size_t len);

struct ef_counter {
    ef__part *parts;
    uint32_t nparts;
    uint32_t flags;
    ef__feed_fn feed;
    uint8_t *scratch; /* WINDOW bytes, with EF_COUNT_LOWERCASE only */
    uint8_t *pend;    /* the word the last feed ended inside of, as it will be counted */
    size_t pend_len, pend_cap;
    size_t max_word; /* SIZE_MAX when there is no cap */
};

/* ------------------------------------------------------------------------------------------ */
/* Bytes                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static const uint8_t ws_table[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define LOW7S 0x7f7f7f7f7f7f7f7full

/* 'A'..'Z' become 'a'..'z' in all 8 bytes at once; bytes >= 0x80 are left alone. Adding to the
 * low 7 bits of each byte cannot carry into the next byte, so the bytes stay independent. */
static inline uint64_t lower8(uint64_t x) {
    uint64_t low7 = x & LOW7S;
    uint64_t ge_a = low7 + ONES * (0x80 - 'A');
    uint64_t gt_z = low7 + ONES * (0x80 - 'Z' - 1);
    uint64_t upper = ge_a & ~gt_z & ~x & HIGHS;
    return x | (upper >> 2);
}

/* keep[n] keeps the low n bytes. Indexed with min(len, 8): word lengths vary all the time, and a
 * branch on them would be mispredicted every few words. */
static const uint64_t keep[9] = {
    0, 0xff, 0xffff, 0xffffff, 0xffffffff, 0xffffffffff, 0xffffffffffff, 0xffffffffffffff, ~0ull,
};
static inline uint64_t keep_bytes(size_t r) { return keep[r < 8 ? r : 8]; }

/* 8 bytes at p, zeros past lim: words near the end of a caller's buffer must not be over-read. */
static inline uint64_t load_upto8(const uint8_t *p, const uint8_t *lim) {
    if (EF_LIKELY(lim - p >= 8))
        return ef__load64(p);
    uint64_t v = 0;
    memcpy(&v, p, (size_t)(lim - p));
    return v;
}

static void lower_copy_swar(uint8_t *dst, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; n - i >= 8; i += 8)
        ef__store64(dst + i, lower8(ef__load64(src + i)));
    for (; i < n; i++)
        dst[i] = (uint8_t)(src[i] + ((unsigned)(src[i] - 'A') < 26u ? 32 : 0));
}

/* ------------------------------------------------------------------------------------------ */
/* Hash                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Constants are odd and bit-dense (from splitmix64); any such would do, but they are part of the
 * partitioning contract: changing them moves words between partitions across builds. */
#define H0 0x9e3779b97f4a7c15ull
#define H1 0xbf58476d1ce4e5b9ull
#define H2 0x94d049bb133111ebull

/* Fold the 128-bit product: both halves of the result depend on every bit of a. */
static inline uint64_t mix(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

/* 8 bytes at p; checked: none past lim (zeros instead). */
EF_INLINE uint64_t load8(const uint8_t *p, const uint8_t *lim, int checked) {
    return checked ? load_upto8(p, lim) : ef__load64(p);
}

/* The first 8 bytes of a word, zero-padded, as stored. */
EF_INLINE uint64_t word_head(const uint8_t *p, size_t len, const uint8_t *lim, int checked) {
    return load8(p, lim, checked) & keep_bytes(len);
}

/* The length goes into the hash because a word may contain NUL bytes: "a" and "a\0" share a
 * zero-padded head. */
EF_INLINE uint64_t word_hash(uint64_t head, const uint8_t *p, size_t len, const uint8_t *lim,
                             int checked) {
    uint64_t h = mix(head ^ H0, (uint64_t)len ^ H1);
    for (size_t k = 8; k < len; k += 8)
        h = mix(h ^ (load8(p + k, lim, checked) & keep_bytes(len - k)), H2);
    return h;
}

static inline uint32_t part_of(uint64_t h, uint32_t nparts) {
    return (uint32_t)(((h >> 32) * nparts) >> 32); /* any count, not only powers of two */
}

/* a + b into *sum; nonzero when it does not fit (the caller refuses: counts never saturate) */
static inline int add_overflows(uint64_t a, uint64_t b, uint64_t *sum) {
    return __builtin_add_overflow(a, b, sum);
}

/* The sum of every partition's total, O(P); nonzero when it overflows. */
static int counter_sum(const ef_counter *c, uint64_t *out);

/* ------------------------------------------------------------------------------------------ */
/* Partitions                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static void part_free(ef__part *pt) {
    free(pt->slots);
    free(pt->entries);
    free(pt->arena);
}

static size_t slots_for(size_t entries) {
    size_t cap = 2 * PART_MIN_ENTRIES;
    while (cap / 2 < entries)
        cap *= 2;
    return cap;
}

/* Zeroed memory, zeroed by writing it rather than by calloc: the fresh pages calloc leaves to
 * the kernel are first read by a table's probes (mapping the shared zero page) and then
 * written, and in a process with threads on other CPUs each such write fault flushes their TLBs
 * by IPI: a fifth of a master's CPU merging one vocabulary (docs/benchmarks.md). Written first,
 * a page faults once. The empty asm keeps the compiler from folding malloc + memset into that
 * very calloc. */
static void *zeroed_by_writing(size_t n) {
    void *p = malloc(n);
    if (p) {
        __asm__ volatile("" : : "r"(p) : "memory");
        memset(p, 0, n);
    }
    return p;
}

/* Slow path: room for at least `entries` entries (slots at most half full). */
static int part_grow_table(ef__part *pt, size_t entries) {
    if (entries > PART_MAX_SLOTS / 2)
        return EF_ENOMEM;
    size_t cap = slots_for(entries);
    if (pt->slots && cap <= (size_t)pt->mask + 1)
        return EF_OK;
    uint64_t *slots = zeroed_by_writing(cap * sizeof *slots);
    if (!slots)
        return EF_ENOMEM;
    ef__entry *ent = realloc(pt->entries, cap / 2 * sizeof *ent);
    if (!ent) {
        free(slots);
        return EF_ENOMEM;
    }
    size_t mask = cap - 1;
    for (uint32_t i = 0; i < pt->n; i++) {
        size_t j = ent[i].hash & mask;
        while (slots[j])
            j = (j + 1) & mask;
        slots[j] = (uint64_t)ent[i].hash << 32 | (i + 1);
    }
    free(pt->slots);
    pt->slots = slots;
    pt->entries = ent;
    pt->mask = (uint32_t)mask;
    pt->max_n = (uint32_t)(cap / 2);
    return EF_OK;
}

/* Slow path: room for at least `bytes` key bytes in all. */
static int part_grow_arena(ef__part *pt, size_t bytes) {
    if (pt->arena && bytes <= pt->arena_cap)
        return EF_OK;
    size_t cap = pt->arena_cap ? pt->arena_cap : 64;
    while (cap < bytes)
        cap = cap > SIZE_MAX / 4 ? bytes : cap * 2;
    if (cap > SIZE_MAX - ARENA_SLACK)
        return EF_ENOMEM;
    uint8_t *a = realloc(pt->arena, cap + ARENA_SLACK);
    if (!a)
        return EF_ENOMEM;
    pt->arena = a;
    pt->arena_cap = cap;
    return EF_OK;
}

/* The word is known absent and slot i is the empty slot its probe ended on. */
static EF_NOINLINE int part_insert(ef__part *pt, size_t i, uint32_t tag, uint64_t head,
                                   const uint8_t *p, size_t len, uint64_t count) {
    if (len > UINT32_MAX)
        return EF_ENOMEM;
    if (EF_UNLIKELY(pt->n >= pt->max_n)) {
        int rc = part_grow_table(pt, (size_t)pt->n + 1);
        if (rc)
            return rc;
        i = tag & pt->mask;
        while (pt->slots[i])
            i = (i + 1) & pt->mask;
    }
    if (EF_UNLIKELY(pt->arena_cap - pt->arena_len < len)) {
        if (len > SIZE_MAX - pt->arena_len)
            return EF_ENOMEM;
        int rc = part_grow_arena(pt, pt->arena_len + len);
        if (rc)
            return rc;
    }
    memcpy(pt->arena + pt->arena_len, p, len);
    ef__entry *e = &pt->entries[pt->n];
    e->count = count;
    e->head = head;
    e->off = pt->arena_len;
    e->len = (uint32_t)len;
    e->hash = tag;
    pt->arena_len += len;
    pt->total += count;
    pt->n++;
    pt->slots[i] = (uint64_t)tag << 32 | pt->n;
    return EF_OK;
}

/* Add count to the word p/len, whose head and hash (tag: its low 32 bits) word_head and word_hash
 * computed. The caller made sure pt->total + count fits (so the word's count does too). */
EF_INLINE int part_add(ef__part *pt, uint32_t tag, uint64_t head, const uint8_t *p, size_t len,
                       uint64_t count) {
    size_t i = tag & pt->mask;
    for (;;) {
        uint64_t s = pt->slots[i];
        if (s == 0)
            return part_insert(pt, i, tag, head, p, len, count);
        if ((uint32_t)(s >> 32) == tag) {
            ef__entry *e = &pt->entries[(uint32_t)s - 1];
            if (e->head == head && e->len == len &&
                (len <= 8 || memcmp(pt->arena + e->off + 8, p + 8, len - 8) == 0)) {
                e->count += count;
                pt->total += count;
                return EF_OK;
            }
        }
        i = (i + 1) & pt->mask;
    }
}

static inline const ef__entry *part_find(const ef__part *pt, uint32_t tag, uint64_t head,
                                         const uint8_t *p, size_t len) {
    size_t i = tag & pt->mask;
    for (;;) {
        uint64_t s = pt->slots[i];
        if (s == 0)
            return NULL;
        if ((uint32_t)(s >> 32) == tag) {
            const ef__entry *e = &pt->entries[(uint32_t)s - 1];
            if (e->head == head && e->len == len &&
                (len <= 8 || memcmp(pt->arena + e->off + 8, p + 8, len - 8) == 0))
                return e;
        }
        i = (i + 1) & pt->mask;
    }
}

/* Count one whole word found in [p, p + len); checked: bytes are readable up to lim only,
 * otherwise 8 bytes past any byte of the word are. */
EF_INLINE int count_word(ef__part *parts, uint32_t nparts, const uint8_t *p, size_t len,
                         const uint8_t *lim, int checked) {
    uint64_t head = word_head(p, len, lim, checked);
    uint64_t h = word_hash(head, p, len, lim, checked);
    return part_add(&parts[part_of(h, nparts)], (uint32_t)h, head, p, len, 1);
}

/* Add a whole key as given (no lowercasing), readable up to lim: a key inside a larger buffer
 * (a serialized table, an arena) reads its head in one load instead of byte by byte. */
static int counter_add_key(ef_counter *c, const uint8_t *p, size_t len, const uint8_t *lim,
                           uint64_t count) {
    uint64_t head = word_head(p, len, lim, 1);
    uint64_t h = word_hash(head, p, len, lim, 1);
    return part_add(&c->parts[part_of(h, c->nparts)], (uint32_t)h, head, p, len, count);
}

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Bit i set where byte i of the 64 at p is whitespace. */
typedef uint64_t (*ef__mask_fn)(const uint8_t *p);

static inline uint64_t ws_mask_swar(const uint8_t *p) {
    uint64_t m = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t x = ef__load64(p + 8 * k), low7 = x & LOW7S;
        uint64_t sp = x ^ (ONES * ' ');
        uint64_t is_sp = ~(((sp & LOW7S) + LOW7S) | sp) & HIGHS; /* exact per byte: no borrows */
        uint64_t ge9 = low7 + ONES * (0x80 - 9), ge14 = low7 + ONES * (0x80 - 14);
        uint64_t is_ctl = ge9 & ~ge14 & ~x & HIGHS;
        /* gather the 8 high bits into the top byte: the multiplier's partial products never
         * overlap, so nothing carries */
        uint64_t bits = (((is_sp | is_ctl) >> 7) * 0x0102040810204080ull) >> 56;
        m |= bits << (8 * k);
    }
    return m;
}

#if EF__COUNT_X86
/* pshufb on the low nibble maps 0x9..0xD to themselves and 0x0 to ' '; a byte is whitespace iff
 * it equals its image (bytes >= 0x80 map to 0, and no other byte equals its nibble's image). */
__attribute__((target("avx2"))) static inline uint64_t ws_mask_avx2(const uint8_t *p) {
    const __m256i table =
        _mm256_setr_epi8(' ', 0, 0, 0, 0, 0, 0, 0, 0, '\t', '\n', '\v', '\f', '\r', 0, 0, ' ', 0, 0,
                         0, 0, 0, 0, 0, 0, '\t', '\n', '\v', '\f', '\r', 0, 0);
    const __m256i nib = _mm256_set1_epi8(0x0f);
    __m256i a = _mm256_loadu_si256((const __m256i *)p);
    __m256i b = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i la = _mm256_shuffle_epi8(table, _mm256_and_si256(a, nib));
    __m256i lb = _mm256_shuffle_epi8(table, _mm256_and_si256(b, nib));
    uint32_t ma = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(la, a));
    uint32_t mb = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lb, b));
    return (uint64_t)mb << 32 | ma;
}
#endif

/* Tokenizer state inside one feed: carry = 1 when the byte before the block is whitespace;
 * start = where the word running into this block began, NULL when none does. */
typedef struct ef__scan {
    uint64_t carry;
    const uint8_t *start;
} ef__scan;

/* Words of one 64-byte block at b whose whitespace mask is ws; starts outside `valid` are
 * ignored (the padding of a short last block). Starts and ends alternate, so pairing the k-th
 * start with the k-th end (after the end of a word carried in) finds every word. */
EF_INLINE int scan_block(ef__part *parts, uint32_t nparts, const uint8_t *b, uint64_t ws,
                         uint64_t valid, ef__scan *sc, const uint8_t *lim, int checked,
                         size_t maxw) {
    uint64_t prev = ws << 1 | sc->carry;
    sc->carry = ws >> 63;
    uint64_t starts = ~ws & prev & valid, ends = ws & ~prev;
    if (sc->start) {
        if (!ends)
            return EF_OK;
        const uint8_t *s = sc->start;
        sc->start = NULL;
        size_t n = (size_t)(b + __builtin_ctzll(ends) - s);
        if (EF_UNLIKELY(n > maxw))
            return EF_EWORDTOOLONG;
        int rc = count_word(parts, nparts, s, n, lim, checked);
        if (rc)
            return rc;
        ends &= ends - 1;
    }
    while (starts) {
        size_t s = (size_t)__builtin_ctzll(starts);
        starts &= starts - 1;
        if (!ends) {
            sc->start = b + s;
            break;
        }
        size_t e = (size_t)__builtin_ctzll(ends);
        ends &= ends - 1;
        /* a word inside one block is at most 64 bytes: only a cap that low needs this check */
        if (EF_UNLIKELY(e - s > maxw))
            return EF_EWORDTOOLONG;
        int rc = count_word(parts, nparts, b + s, e - s, lim, checked);
        if (EF_UNLIKELY(rc))
            return rc;
    }
    return EF_OK;
}

/* Slow path: append to the pending word. */
static int pend_append(ef_counter *c, const uint8_t *p, size_t len) {
    /* refused before growing: a word with no end (/dev/zero) never takes more than the cap */
    if (len > c->max_word - c->pend_len)
        return EF_EWORDTOOLONG;
    if (len > c->pend_cap - c->pend_len) {
        if (len > SIZE_MAX / 2 - c->pend_len)
            return EF_ENOMEM;
        size_t cap = c->pend_cap ? c->pend_cap : 64;
        while (cap < c->pend_len + len)
            cap *= 2;
        uint8_t *np = realloc(c->pend, cap);
        if (!np)
            return EF_ENOMEM;
        c->pend = np;
        c->pend_cap = cap;
    }
    memcpy(c->pend + c->pend_len, p, len);
    c->pend_len += len;
    return EF_OK;
}

static int pend_count(ef_counter *c) {
    int rc = count_word(c->parts, c->nparts, c->pend, c->pend_len, c->pend + c->pend_len, 1);
    if (rc == EF_OK)
        c->pend_len = 0;
    return rc;
}

/* Count data as it is (lowercasing, if any, was done before). */
EF_INLINE int feed_body(ef_counter *c, const uint8_t *data, size_t len, ef__mask_fn ws_mask) {
    const uint8_t *lim = data + len;
    size_t i = 0;
    if (c->pend_len) {
        /* the word left over from the last feed runs to the first whitespace */
        while (i < len && !ws_table[data[i]])
            i++;
        int rc = pend_append(c, data, i);
        if (rc || i == len)
            return rc;
        if ((rc = pend_count(c)))
            return rc;
    }
    ef__part *parts = c->parts;
    uint32_t nparts = c->nparts;
    ef__scan sc = {1, NULL};
    for (; len - i >= 64 + SAFE_TAIL; i += 64) {
        int rc =
            scan_block(parts, nparts, data + i, ws_mask(data + i), ~0ull, &sc, lim, 0, c->max_word);
        if (EF_UNLIKELY(rc))
            return rc;
    }
    while (i < len) {
        /* the last bytes: loads checked, and a short block masked from a copy padded with a
         * non-space byte, so a word running into the padding stays open (words themselves are
         * read from data) */
        size_t n = len - i < 64 ? len - i : 64;
        uint8_t pad[64];
        memset(pad, 'x', sizeof pad);
        memcpy(pad, data + i, n);
        uint64_t valid = n == 64 ? ~0ull : (1ull << n) - 1;
        int rc = scan_block(parts, nparts, data + i, ws_mask(pad), valid, &sc, lim, 1, c->max_word);
        if (rc)
            return rc;
        i += n;
    }
    return sc.start ? pend_append(c, sc.start, (size_t)(lim - sc.start)) : EF_OK;
}

typedef void (*ef__lower_fn)(uint8_t *dst, const uint8_t *src, size_t n);

EF_INLINE int feed_lower_body(ef_counter *c, const uint8_t *data, size_t len, ef__mask_fn ws_mask,
                              ef__lower_fn lower_copy) {
    for (size_t i = 0; i < len; i += WINDOW) {
        size_t n = len - i < WINDOW ? len - i : WINDOW;
        lower_copy(c->scratch, data + i, n);
        int rc = feed_body(c, c->scratch, n, ws_mask);
        if (rc)
            return rc;
    }
    return EF_OK;
}

static int feed_swar(ef_counter *c, const uint8_t *d, size_t n) {
    return feed_body(c, d, n, ws_mask_swar);
}
static int feed_swar_lower(ef_counter *c, const uint8_t *d, size_t n) {
    return feed_lower_body(c, d, n, ws_mask_swar, lower_copy_swar);
}

#if EF__COUNT_X86
__attribute__((target("avx2"))) static void lower_copy_avx2(uint8_t *dst, const uint8_t *src,
                                                            size_t n) {
    const __m256i a = _mm256_set1_epi8('A'), span = _mm256_set1_epi8('Z' - 'A');
    const __m256i bit = _mm256_set1_epi8(0x20);
    size_t i = 0;
    for (; n - i >= 32; i += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i t = _mm256_sub_epi8(x, a);
        __m256i upper = _mm256_cmpeq_epi8(_mm256_min_epu8(t, span), t);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_or_si256(x, _mm256_and_si256(upper, bit)));
    }
    lower_copy_swar(dst + i, src + i, n - i);
}

__attribute__((target("avx2,bmi,bmi2"))) static int feed_avx2(ef_counter *c, const uint8_t *d,
                                                              size_t n) {
    return feed_body(c, d, n, ws_mask_avx2);
}
__attribute__((target("avx2,bmi,bmi2"))) static int feed_avx2_lower(ef_counter *c, const uint8_t *d,
                                                                    size_t n) {
    return feed_lower_body(c, d, n, ws_mask_avx2, lower_copy_avx2);
}
#endif

static int have_avx2(void) {
#if EF__COUNT_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
           __builtin_cpu_supports("bmi2");
#else
    return 0;
#endif
}

int ef__counter_set_tokenizer(ef_counter *c, int tokenizer) {
    int lower = (c->flags & EF_COUNT_LOWERCASE) != 0;
    switch (tokenizer) {
    case EF__TOKENIZER_PORTABLE:
        c->feed = lower ? feed_swar_lower : feed_swar;
        return EF_OK;
#if EF__COUNT_X86
    case EF__TOKENIZER_AVX2:
        if (!have_avx2())
            return EF_EINVAL;
        c->feed = lower ? feed_avx2_lower : feed_avx2;
        return EF_OK;
#endif
    default:
        return EF_EINVAL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Counter                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Entries for each of nparts partitions to hold `distinct` words in all: hashing spreads words
 * binomially, and the 1/8 + 16 margin covers several standard deviations at any size. */
static size_t per_part(size_t distinct, uint32_t nparts) {
    size_t t = distinct / nparts + (distinct % nparts != 0);
    return t > SIZE_MAX / 2 ? SIZE_MAX : t + t / 8 + 16; /* too many fails later, never wraps */
}

EF_API ef_counter *ef_counter_create(const ef_counter_options *options) {
    ef_counter_options o = {0};
    if (options)
        o = *options;
    if (o.partitions == 0)
        o.partitions = PARTITIONS_DEFAULT;
    if (o.partitions > EF_COUNT_PARTITIONS_MAX || (o.flags & ~EF_COUNT_LOWERCASE))
        return NULL;
    if (o.initial_capacity == 0)
        o.initial_capacity = CAPACITY_DEFAULT;
    ef_counter *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nparts = o.partitions;
    c->flags = o.flags;
    c->max_word = o.max_word ? o.max_word : SIZE_MAX;
    c->parts = aligned_alloc(64, o.partitions * sizeof *c->parts);
    if (!c->parts) {
        free(c);
        return NULL;
    }
    memset(c->parts, 0, o.partitions * sizeof *c->parts);
    if ((o.flags & EF_COUNT_LOWERCASE) && !(c->scratch = malloc(WINDOW))) {
        ef_counter_free(c);
        return NULL;
    }
    size_t t = per_part(o.initial_capacity, o.partitions);
    for (uint32_t p = 0; p < c->nparts; p++) {
        if (part_grow_table(&c->parts[p], t) || part_grow_arena(&c->parts[p], t * 8)) {
            ef_counter_free(c);
            return NULL;
        }
    }
    ef__counter_set_tokenizer(c, have_avx2() ? EF__TOKENIZER_AVX2 : EF__TOKENIZER_PORTABLE);
    return c;
}

EF_API void ef_counter_free(ef_counter *c) {
    if (!c)
        return;
    if (c->parts)
        for (uint32_t p = 0; p < c->nparts; p++)
            part_free(&c->parts[p]);
    free(c->parts);
    free(c->scratch);
    free(c->pend);
    free(c);
}

EF_API int ef_counter_feed(ef_counter *c, const uint8_t *data, size_t len) {
    if (!c || (!data && len))
        return EF_EINVAL;
    /* len bytes hold at most len words (and one pending): once per call, not per word */
    uint64_t total, after;
    if (counter_sum(c, &total) || add_overflows(total, (uint64_t)len + 1, &after))
        return EF_EOVERFLOW;
    return len ? c->feed(c, data, len) : EF_OK;
}

EF_API int ef_counter_finish(ef_counter *c) {
    if (!c)
        return EF_EINVAL;
    return c->pend_len ? pend_count(c) : EF_OK;
}

EF_API int ef_counter_add(ef_counter *c, const uint8_t *word, size_t len, uint64_t count) {
    if (!c || !word || len == 0)
        return EF_EINVAL;
    uint64_t total, after;
    if (counter_sum(c, &total) || add_overflows(total, count, &after))
        return EF_EOVERFLOW;
    return count ? counter_add_key(c, word, len, word + len, count) : EF_OK;
}

EF_API int ef_counter_reserve(ef_counter *c, size_t distinct) {
    if (!c)
        return EF_EINVAL;
    size_t t = per_part(distinct, c->nparts);
    for (uint32_t p = 0; p < c->nparts; p++) {
        ef__part *pt = &c->parts[p];
        int rc = part_grow_table(pt, t);
        if (rc == EF_OK && t <= SIZE_MAX / 8)
            rc = part_grow_arena(pt, t * 8); /* a guess at key bytes; more may come */
        if (rc)
            return rc;
    }
    return EF_OK;
}

EF_API void ef_counter_clear(ef_counter *c) {
    if (!c)
        return;
    for (uint32_t p = 0; p < c->nparts; p++) {
        ef__part *pt = &c->parts[p];
        memset(pt->slots, 0, ((size_t)pt->mask + 1) * sizeof *pt->slots);
        pt->n = 0;
        pt->arena_len = 0;
        pt->total = 0;
    }
    c->pend_len = 0;
}

EF_API uint32_t ef_counter_partitions(const ef_counter *c) { return c ? c->nparts : 0; }
EF_API uint32_t ef_counter_flags(const ef_counter *c) { return c ? c->flags : 0; }

EF_API size_t ef_counter_distinct(const ef_counter *c) {
    size_t n = 0;
    for (uint32_t p = 0; c && p < c->nparts; p++)
        n += c->parts[p].n;
    return n;
}

static int counter_sum(const ef_counter *c, uint64_t *out) {
    uint64_t t = 0;
    for (uint32_t p = 0; p < c->nparts; p++)
        if (add_overflows(t, c->parts[p].total, &t))
            return 1;
    *out = t;
    return 0;
}

EF_API uint64_t ef_counter_total(const ef_counter *c) {
    uint64_t t = 0;
    if (c && counter_sum(c, &t))
        return UINT64_MAX; /* only partition merges can get here: see the header */
    return t;
}

EF_API uint64_t ef_counter_get(const ef_counter *c, const uint8_t *word, size_t len) {
    if (!c || !word || len == 0)
        return 0;
    uint64_t head = word_head(word, len, word + len, 1);
    uint64_t h = word_hash(head, word, len, word + len, 1);
    const ef__entry *e = part_find(&c->parts[part_of(h, c->nparts)], (uint32_t)h, head, word, len);
    return e ? e->count : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Merge                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Same hash, same partition count: the stored tag and head carry over and nothing is re-hashed.
 * dst == src doubles every count: each key finds itself, so no insert moves what is read. */
static int merge_part(ef__part *dpt, const ef__part *spt) {
    uint64_t after;
    if (add_overflows(dpt->total, spt->total, &after))
        return EF_EOVERFLOW;
    for (uint32_t i = 0; i < spt->n; i++) {
        const ef__entry *e = &spt->entries[i];
        int rc = part_add(dpt, e->hash, e->head, spt->arena + e->off, e->len, e->count);
        if (EF_UNLIKELY(rc))
            return rc;
    }
    return EF_OK;
}

EF_API int ef_counter_merge_partition(ef_counter *dst, const ef_counter *src, uint32_t partition) {
    if (!dst || !src || dst->nparts != src->nparts || partition >= dst->nparts)
        return EF_EINVAL;
    return merge_part(&dst->parts[partition], &src->parts[partition]);
}

EF_API int ef_counter_merge(ef_counter *dst, const ef_counter *src) {
    if (!dst || !src)
        return EF_EINVAL;
    uint64_t a, b, after;
    if (counter_sum(dst, &a) || counter_sum(src, &b) || add_overflows(a, b, &after))
        return EF_EOVERFLOW; /* checked whole first: every partition's total then fits */
    if (dst->nparts == src->nparts) {
        for (uint32_t p = 0; p < dst->nparts; p++) {
            int rc = merge_part(&dst->parts[p], &src->parts[p]);
            if (rc)
                return rc;
        }
        return EF_OK;
    }
    for (uint32_t p = 0; p < src->nparts; p++) {
        const ef__part *spt = &src->parts[p];
        for (uint32_t i = 0; i < spt->n; i++) {
            const ef__entry *e = &spt->entries[i];
            int rc = counter_add_key(dst, spt->arena + e->off, e->len,
                                     spt->arena + spt->arena_cap + ARENA_SLACK, e->count);
            if (rc)
                return rc;
        }
    }
    return EF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Serialization                                                                              */
/* ------------------------------------------------------------------------------------------ */

#define VARINT_MAX 10

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Reads a varint of at most 10 bytes whose value fits in 64 bits (non-minimal encodings are
 * accepted, as protobuf does). Returns the bytes read, 0 when truncated or invalid. */
static size_t varint_get(const uint8_t *p, size_t avail, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < avail && i < VARINT_MAX; i++) {
        uint64_t b = p[i];
        if (i == VARINT_MAX - 1 && b > 1)
            return 0; /* bits past the 64th, or an 11th byte */
        v |= (b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

EF_API size_t ef_counter_serialized_size(const ef_counter *c) {
    if (!c)
        return 0;
    size_t n = 8;
    for (uint32_t p = 0; p < c->nparts; p++) {
        const ef__part *pt = &c->parts[p];
        for (uint32_t i = 0; i < pt->n; i++)
            n += varint_size(pt->entries[i].len) + pt->entries[i].len +
                 varint_size(pt->entries[i].count);
    }
    return n;
}

EF_API ptrdiff_t ef_counter_serialize(const ef_counter *c, uint8_t *dst, size_t cap) {
    if (!c || (!dst && cap))
        return EF_EINVAL;
    size_t distinct = ef_counter_distinct(c), size = ef_counter_serialized_size(c);
    if (distinct > UINT32_MAX || size > PTRDIFF_MAX)
        return EF_EINVAL;
    if (cap < size)
        return EF_ESPACE;
    uint8_t *o = dst;
    ef__store32(o, EF_COUNT_MAGIC);
    ef__store32(o + 4, (uint32_t)distinct);
    o += 8;
    for (uint32_t p = 0; p < c->nparts; p++) {
        const ef__part *pt = &c->parts[p];
        for (uint32_t i = 0; i < pt->n; i++) {
            const ef__entry *e = &pt->entries[i];
            o = varint_put(o, e->len);
            memcpy(o, pt->arena + e->off, e->len);
            o += e->len;
            o = varint_put(o, e->count);
        }
    }
    return o - dst;
}

/* One entry at *pos, bounds-checked; advances *pos. */
static int entry_get(const uint8_t *src, size_t len, size_t *pos, const uint8_t **word,
                     size_t *wlen, uint64_t *count) {
    uint64_t l;
    size_t k = varint_get(src + *pos, len - *pos, &l);
    if (!k || l == 0 || l > UINT32_MAX || l > len - *pos - k)
        return EF_EFORMAT;
    *word = src + *pos + k;
    *wlen = (size_t)l;
    *pos += k + (size_t)l;
    k = varint_get(src + *pos, len - *pos, count);
    if (!k || *count == 0)
        return EF_EFORMAT;
    *pos += k;
    return EF_OK;
}

/* Slow path, before any count is added: room in each partition p for need[2p] more entries and
 * need[2p + 1] more key bytes, so adding cannot fail half-way. */
static int reserve_need(ef_counter *dst, const size_t *need) {
    for (uint32_t p = 0; p < dst->nparts; p++) {
        ef__part *pt = &dst->parts[p];
        if (need[2 * p] == 0)
            continue;
        if (need[2 * p + 1] > SIZE_MAX - pt->arena_len)
            return EF_ENOMEM;
        int rc = part_grow_table(pt, pt->n + need[2 * p]);
        if (rc == EF_OK)
            rc = part_grow_arena(pt, pt->arena_len + need[2 * p + 1]);
        if (rc)
            return rc;
    }
    return EF_OK;
}

/* n validated entries at src[0..len): count each one's partition of dst and key bytes in need. */
static void entries_need(const ef_counter *dst, const uint8_t *src, size_t len, uint64_t n,
                         size_t *need) {
    size_t pos = 0, wl;
    const uint8_t *w;
    uint64_t cnt;
    for (uint64_t k = 0; k < n; k++) {
        entry_get(src, len, &pos, &w, &wl, &cnt);
        uint64_t h = word_hash(word_head(w, wl, src + len, 1), w, wl, src + len, 1);
        uint32_t p = part_of(h, dst->nparts);
        need[2 * p]++;
        need[2 * p + 1] += wl;
    }
}

/* n validated entries at src[0..len), added to dst after reserve_need made room for them: every
 * insert fits, so nothing here fails. */
static void entries_add(ef_counter *dst, const uint8_t *src, size_t len, uint64_t n) {
    size_t pos = 0, wl;
    const uint8_t *w;
    uint64_t cnt;
    for (uint64_t k = 0; k < n; k++) {
        entry_get(src, len, &pos, &w, &wl, &cnt);
        counter_add_key(dst, w, wl, src + len, cnt);
    }
}

static ptrdiff_t deserialize_partitioned(ef_counter *dst, const uint8_t *src, size_t len);

EF_API ptrdiff_t ef_counter_deserialize(ef_counter *dst, const uint8_t *src, size_t len) {
    if (!dst || (!src && len))
        return EF_EINVAL;
    if (len < 4)
        return EF_EFORMAT;
    if (ef__load32(src) == EF_COUNT_PART_MAGIC)
        return deserialize_partitioned(dst, src, len);
    if (ef__load32(src) != EF_COUNT_MAGIC)
        return EF_EBADMAGIC;
    if (len < 8)
        return EF_EFORMAT;
    uint32_t n = ef__load32(src + 4);
    if (n > (len - 8) / 3) /* an entry takes at least 3 bytes */
        return EF_EFORMAT;

    /* Pass 1: validate everything, and that the counts fit with dst's. */
    size_t pos = 8;
    const uint8_t *w;
    size_t wl;
    uint64_t cnt, sum = 0;
    int over = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (entry_get(src, len, &pos, &w, &wl, &cnt))
            return EF_EFORMAT;
        over |= add_overflows(sum, cnt, &sum);
    }
    if (pos != len)
        return EF_EFORMAT;
    uint64_t had;
    if (over || counter_sum(dst, &had) || add_overflows(had, sum, &sum))
        return EF_EOVERFLOW;

    /* Pass 2: make room in each partition for its worst case, so pass 3 cannot fail half-way. */
    size_t *need = calloc(2 * (size_t)dst->nparts, sizeof *need);
    if (!need)
        return EF_ENOMEM;
    entries_need(dst, src + 8, len - 8, n, need);
    int rc = reserve_need(dst, need);
    free(need);
    if (rc)
        return rc;

    /* Pass 3: add. */
    entries_add(dst, src + 8, len - 8, n);
    return (ptrdiff_t)n;
}

/* ------------------------------------------------------------------------------------------ */
/* Partitioned serialization (EFCP)                                                           */
/* ------------------------------------------------------------------------------------------ */
/*
 * One section per partition, each found from the header alone, so the thread that owns
 * partition p of the receiving table reads section p and nothing else. Sections lie in
 * partition order, back to back, after the section table: the reader checks exactly that (one
 * comparison per section) instead of sorting offsets to prove they do not overlap, and the
 * buffer has one valid layout for a given table. Offsets are u64 although a frame's payload is
 * at most 4 GiB: a table also goes to checkpoints, which have no such limit.
 */

/* The layout, to let the compiler check the offsets docs/protocol.md gives; the buffer is read
 * field by field, never cast. */
struct ef__cp_header {
    uint32_t magic;
    uint8_t version;
    uint8_t reserved8;
    uint16_t reserved16;
    uint32_t partitions;
    uint32_t flags;
};
struct ef__cp_section {
    uint64_t offset; /* from the buffer's start */
    uint64_t length; /* bytes */
    uint64_t entries;
};
_Static_assert(sizeof(struct ef__cp_header) == EF_COUNT_PART_HEADER_SIZE, "EFCP header size");
_Static_assert(sizeof(struct ef__cp_section) == EF_COUNT_PART_SECTION_SIZE, "EFCP section size");
_Static_assert(offsetof(struct ef__cp_header, version) == 4 &&
                   offsetof(struct ef__cp_header, partitions) == 8 &&
                   offsetof(struct ef__cp_header, flags) == 12,
               "EFCP header fields");
_Static_assert(EF_COUNT_PART_MAGIC ==
                   ((uint32_t)'E' | (uint32_t)'F' << 8 | (uint32_t)'C' << 16 | (uint32_t)'P' << 24),
               "the magic reads \"EFCP\" on the wire");
_Static_assert(EF_COUNT_PARTITIONS_MAX <=
                   (SIZE_MAX - EF_COUNT_PART_HEADER_SIZE) / EF_COUNT_PART_SECTION_SIZE,
               "a section table of the most partitions has a size");

/* Where the sections start: after the header and the table. */
static size_t cp_body(uint32_t nparts) {
    return EF_COUNT_PART_HEADER_SIZE + (size_t)nparts * EF_COUNT_PART_SECTION_SIZE;
}

/* The header and the presence of the whole section table; O(1). Fills *nparts. */
static int cp_header(const uint8_t *src, size_t len, uint32_t *nparts) {
    if (!src && len)
        return EF_EINVAL;
    if (len < 4)
        return EF_EFORMAT;
    if (ef__load32(src) != EF_COUNT_PART_MAGIC)
        return EF_EBADMAGIC;
    if (len < EF_COUNT_PART_HEADER_SIZE)
        return EF_EFORMAT;
    if (src[4] != EF_COUNT_PART_VERSION)
        return EF_EVERSION;
    uint32_t np = ef__load32(src + 8);
    if (src[5] || src[6] || src[7] || np == 0 || np > EF_COUNT_PARTITIONS_MAX ||
        (ef__load32(src + 12) & ~EF_COUNT_LOWERCASE) || len < cp_body(np))
        return EF_EFORMAT;
    *nparts = np;
    return EF_OK;
}

/* Section p's bytes, held to the buffer's bounds only (O(1)): enough for reading it safely.
 * ef_counter_partitioned_check holds the sections to each other. */
static int cp_section(const uint8_t *src, size_t len, uint32_t nparts, uint32_t p,
                      const uint8_t **sec, size_t *sec_len, uint64_t *entries) {
    const uint8_t *d = src + EF_COUNT_PART_HEADER_SIZE + (size_t)p * EF_COUNT_PART_SECTION_SIZE;
    uint64_t off = ef__load64(d), slen = ef__load64(d + 8), n = ef__load64(d + 16);
    if (off < cp_body(nparts) || off > len || slen > len - off || n > slen / 3)
        return EF_EFORMAT; /* an entry takes at least 3 bytes */
    *sec = src + off;
    *sec_len = (size_t)slen;
    *entries = n;
    return EF_OK;
}

/* Everything section_check promises about section p of an nparts-partition buffer, touching
 * nothing: its entries, exactly its bytes, and each one's key hashing to partition p — a peer
 * that lies about it would otherwise plant a key where no lookup finds it, and a word counted
 * twice. Fills *keys with the key bytes in all. Returns the entry count. */
static ptrdiff_t cp_validate(const uint8_t *sec, size_t sec_len, uint64_t n, uint32_t nparts,
                             uint32_t p, size_t *keys, uint64_t *sum) {
    size_t pos = 0, wl, total = 0;
    const uint8_t *w;
    uint64_t cnt, counts = 0;
    int over = 0;
    for (uint64_t k = 0; k < n; k++) {
        if (entry_get(sec, sec_len, &pos, &w, &wl, &cnt))
            return EF_EFORMAT;
        uint64_t h = word_hash(word_head(w, wl, sec + sec_len, 1), w, wl, sec + sec_len, 1);
        if (part_of(h, nparts) != p)
            return EF_EFORMAT;
        total += wl;
        over |= add_overflows(counts, cnt, &counts);
    }
    if (pos != sec_len)
        return EF_EFORMAT;
    if (over)
        return EF_EOVERFLOW;
    *keys = total;
    *sum = counts;
    return (ptrdiff_t)n;
}

EF_API size_t ef_counter_partitioned_size(const ef_counter *c) {
    if (!c)
        return 0;
    /* the EFCT size less its 8-byte header is the bytes of all entries */
    return cp_body(c->nparts) + ef_counter_serialized_size(c) - 8;
}

EF_API ptrdiff_t ef_counter_serialize_partitioned(const ef_counter *c, uint8_t *dst, size_t cap) {
    if (!c || (!dst && cap))
        return EF_EINVAL;
    size_t size = ef_counter_partitioned_size(c);
    if (size > PTRDIFF_MAX)
        return EF_EINVAL;
    if (cap < size)
        return EF_ESPACE;
    ef__store32(dst, EF_COUNT_PART_MAGIC);
    dst[4] = EF_COUNT_PART_VERSION;
    dst[5] = dst[6] = dst[7] = 0;
    ef__store32(dst + 8, c->nparts);
    ef__store32(dst + 12, c->flags);
    uint8_t *o = dst + cp_body(c->nparts);
    for (uint32_t p = 0; p < c->nparts; p++) {
        const ef__part *pt = &c->parts[p];
        uint8_t *start = o;
        for (uint32_t i = 0; i < pt->n; i++) {
            const ef__entry *e = &pt->entries[i];
            o = varint_put(o, e->len);
            memcpy(o, pt->arena + e->off, e->len);
            o += e->len;
            o = varint_put(o, e->count);
        }
        uint8_t *d = dst + EF_COUNT_PART_HEADER_SIZE + (size_t)p * EF_COUNT_PART_SECTION_SIZE;
        ef__store64(d, (uint64_t)(start - dst));
        ef__store64(d + 8, (uint64_t)(o - start));
        ef__store64(d + 16, pt->n);
    }
    return o - dst;
}

EF_API ptrdiff_t ef_counter_partitioned_check(const uint8_t *src, size_t len,
                                              uint32_t *partitions) {
    uint32_t np;
    int rc = cp_header(src, len, &np);
    if (rc)
        return rc;
    size_t at = cp_body(np);
    for (uint32_t p = 0; p < np; p++) {
        const uint8_t *sec;
        size_t sec_len;
        uint64_t n;
        if (cp_section(src, len, np, p, &sec, &sec_len, &n) || (size_t)(sec - src) != at)
            return EF_EFORMAT;
        at += sec_len;
    }
    if (at != len)
        return EF_EFORMAT;
    if (partitions)
        *partitions = np;
    return (ptrdiff_t)np;
}

EF_API ptrdiff_t ef_counter_section_check(const uint8_t *src, size_t len, uint32_t partition) {
    uint32_t np;
    int rc = cp_header(src, len, &np);
    if (rc)
        return rc;
    if (partition >= np)
        return EF_EINVAL;
    const uint8_t *sec;
    size_t sec_len, keys;
    uint64_t n, sum;
    if (cp_section(src, len, np, partition, &sec, &sec_len, &n))
        return EF_EFORMAT;
    return cp_validate(sec, sec_len, n, np, partition, &keys, &sum);
}

EF_API ptrdiff_t ef_counter_section_merge(ef_counter *dst, const uint8_t *src, size_t len,
                                          uint32_t partition) {
    if (!dst)
        return EF_EINVAL;
    uint32_t np;
    int rc = cp_header(src, len, &np);
    if (rc)
        return rc;
    if (np != dst->nparts || partition >= np)
        return EF_EINVAL;
    const uint8_t *sec;
    size_t sec_len, keys;
    uint64_t n, sum, after;
    if (cp_section(src, len, np, partition, &sec, &sec_len, &n))
        return EF_EFORMAT;
    /* Validated again although the caller should have run section_check: a merge must never add
     * part of a section, nor a key outside its partition, whatever the caller did. */
    ptrdiff_t got = cp_validate(sec, sec_len, n, np, partition, &keys, &sum);
    if (got < 0)
        return got;
    /* Only this partition's memory is touched from here on: that is the threading promise. */
    ef__part *pt = &dst->parts[partition];
    if (n == 0)
        return 0;
    if (add_overflows(pt->total, sum, &after))
        return EF_EOVERFLOW;
    if (keys > SIZE_MAX - pt->arena_len)
        return EF_ENOMEM;
    rc = part_grow_table(pt, pt->n + (size_t)n);
    if (rc == EF_OK)
        rc = part_grow_arena(pt, pt->arena_len + keys);
    if (rc)
        return rc;
    /* Same hash, same partition count: every key lands in pt (checked above), and every insert
     * fits in the room just made, so nothing below fails. */
    size_t pos = 0, wl;
    const uint8_t *w;
    uint64_t cnt;
    for (uint64_t k = 0; k < n; k++) {
        entry_get(sec, sec_len, &pos, &w, &wl, &cnt);
        uint64_t head = word_head(w, wl, sec + sec_len, 1);
        uint64_t h = word_hash(head, w, wl, sec + sec_len, 1);
        part_add(pt, (uint32_t)h, head, w, wl, cnt);
    }
    return got;
}

/* Validate every section first, then add: on any error dst is unchanged, as for EFCT. */
static ptrdiff_t deserialize_partitioned(ef_counter *dst, const uint8_t *src, size_t len) {
    uint32_t np;
    ptrdiff_t rc = ef_counter_partitioned_check(src, len, &np);
    if (rc < 0)
        return rc;
    size_t *need = calloc(2 * (size_t)dst->nparts, sizeof *need);
    if (!need)
        return EF_ENOMEM;
    ptrdiff_t total = 0;
    const uint8_t *sec = NULL; /* set by cp_section, which cannot fail on a checked buffer */
    size_t sec_len = 0, keys = 0;
    uint64_t n = 0, sum = 0, counts;
    if (counter_sum(dst, &sum)) {
        free(need);
        return EF_EOVERFLOW;
    }
    for (uint32_t p = 0; p < np; p++) {
        cp_section(src, len, np, p, &sec, &sec_len, &n);
        rc = cp_validate(sec, sec_len, n, np, p, &keys, &counts);
        if (rc >= 0 && add_overflows(sum, counts, &sum))
            rc = EF_EOVERFLOW; /* dst's total and every section so far: all or nothing */
        if (rc < 0) {
            free(need);
            return rc;
        }
        total += rc;
        if (np == dst->nparts) { /* the partitions agree: the section is the need, no re-hash */
            need[2 * p] = (size_t)n;
            need[2 * p + 1] = keys;
        }
    }
    for (uint32_t p = 0; np != dst->nparts && p < np; p++) {
        cp_section(src, len, np, p, &sec, &sec_len, &n);
        entries_need(dst, sec, sec_len, n, need);
    }
    rc = reserve_need(dst, need);
    free(need);
    if (rc)
        return rc;
    for (uint32_t p = 0; p < np; p++) {
        cp_section(src, len, np, p, &sec, &sec_len, &n);
        entries_add(dst, sec, sec_len, n);
    }
    return total;
}
/* n entries at src[0..len), read (no hashing) into *b; EF_EFORMAT unless they fill it exactly. */
static int bounds_add(const uint8_t *src, size_t len, uint64_t n, ef_counter_bounds *b) {
    size_t pos = 0, wl;
    const uint8_t *w;
    uint64_t cnt;
    for (uint64_t k = 0; k < n; k++) {
        if (entry_get(src, len, &pos, &w, &wl, &cnt))
            return EF_EFORMAT;
        if (add_overflows(b->total, cnt, &b->total))
            return EF_EOVERFLOW;
        if (wl > b->longest)
            b->longest = wl;
    }
    b->entries += n;
    return pos == len ? EF_OK : EF_EFORMAT;
}

EF_API int ef_counter_table_bounds(const uint8_t *src, size_t len, ef_counter_bounds *out) {
    if (!out || (!src && len))
        return EF_EINVAL;
    ef_counter_bounds b = {0, 0, 0};
    if (len < 4)
        return EF_EFORMAT;
    int rc;
    if (ef__load32(src) == EF_COUNT_PART_MAGIC) {
        uint32_t np;
        ptrdiff_t checked = ef_counter_partitioned_check(src, len, &np);
        if (checked < 0)
            return (int)checked;
        for (uint32_t p = 0; p < np; p++) {
            /* set by cp_section, which cannot fail on a checked buffer */
            const uint8_t *sec = NULL;
            size_t sec_len = 0;
            uint64_t n = 0;
            cp_section(src, len, np, p, &sec, &sec_len, &n);
            if ((rc = bounds_add(sec, sec_len, n, &b)))
                return rc;
        }
    } else {
        if (ef__load32(src) != EF_COUNT_MAGIC)
            return EF_EBADMAGIC;
        if (len < 8)
            return EF_EFORMAT;
        uint32_t n = ef__load32(src + 4);
        if (n > (len - 8) / 3)
            return EF_EFORMAT;
        if ((rc = bounds_add(src + 8, len - 8, n, &b)))
            return rc;
    }
    *out = b;
    return EF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Export                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Export order: count descending, then bytes ascending (memcmp), a prefix before its extensions.
 * glibc's qsort spent most of its time in the indirect comparator and in memcmp on the many ties
 * of a vocabulary's long tail; this comparator is inlined and settles most ties on a prefix. */

/* A key's first 8 bytes, zero-padded, as a big-endian number: comparing two compares the keys'
 * first 8 bytes in memcmp order. The load may run past the key, never past the arena's slack. */
static inline uint64_t key_prefix(const ef_slice *w) {
    return __builtin_bswap64(ef__load64(w->ptr) & keep_bytes(w->len));
}

static inline int wc_before(const ef_word_count *a, const ef_word_count *b) {
    if (a->count != b->count)
        return a->count > b->count;
    uint64_t pa = key_prefix(&a->word), pb = key_prefix(&b->word);
    if (pa != pb)
        return pa < pb;
    /* equal up to 8 bytes (or one is the other padded with NULs): the rest decides */
    size_t n = a->word.len < b->word.len ? a->word.len : b->word.len;
    int r = memcmp(a->word.ptr, b->word.ptr, n);
    return r ? r < 0 : a->word.len < b->word.len;
}

static inline void wc_swap(ef_word_count *a, ef_word_count *b) {
    ef_word_count t = *a;
    *a = *b;
    *b = t;
}

/* Max-heap in sort order: the root is the entry that sorts last of those kept. */
static void heap_sift(ef_word_count *h, size_t n, size_t i) {
    ef_word_count x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && wc_before(&h[c], &h[c + 1]))
            c++;
        if (!wc_before(&x, &h[c]))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Sorts a heap built by heap_sift in place. */
static void heap_sort_out(ef_word_count *h, size_t n) {
    for (size_t m = n; m > 1; m--) {
        wc_swap(&h[0], &h[m - 1]);
        heap_sift(h, m - 1, 0);
    }
}

/* Introsort: quicksort on a median of three, insertion sort for short runs, and heapsort when the
 * recursion gets deep, so no input makes it quadratic. Needs no memory besides the array. */
static void wc_sort(ef_word_count *a, size_t n, int depth) {
    while (n > 16) {
        if (depth-- == 0) {
            for (size_t j = n / 2; j-- > 0;)
                heap_sift(a, n, j);
            heap_sort_out(a, n);
            return;
        }
        size_t m = n / 2;
        if (wc_before(&a[m], &a[0]))
            wc_swap(&a[m], &a[0]);
        if (wc_before(&a[n - 1], &a[0]))
            wc_swap(&a[n - 1], &a[0]);
        if (wc_before(&a[n - 1], &a[m]))
            wc_swap(&a[n - 1], &a[m]);
        /* Hoare partition around the median's value; a[0] <= pivot <= a[n - 1] bound both scans */
        ef_word_count pivot = a[m];
        size_t i = 0, j = n - 1;
        for (;;) {
            while (wc_before(&a[i], &pivot))
                i++;
            while (wc_before(&pivot, &a[j]))
                j--;
            if (i >= j)
                break;
            wc_swap(&a[i], &a[j]);
            i++;
            j--;
        }
        /* [0, j] and [j + 1, n), both non-empty: recurse into the smaller, loop on the larger */
        size_t left = j + 1;
        if (left < n - left) {
            wc_sort(a, left, depth);
            a += left;
            n -= left;
        } else {
            wc_sort(a + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        ef_word_count x = a[i];
        size_t j = i;
        for (; j > 0 && wc_before(&x, &a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

/* A word's place in the order, for wc_radix_sort: most frequent first (~count ascending), then
 * by the first 8 bytes; at is the word's index in the array being sorted. */
typedef struct wc_key {
    uint64_t count; /* ~count */
    uint64_t prefix;
    uint64_t at;
} wc_key;

/* Byte d of a key's 16 (0 = least significant: the prefix's last byte; 15 = the count's top). */
static inline unsigned wc_key_byte(const wc_key *k, unsigned d) {
    return (unsigned)((d < 8 ? k->prefix >> (8 * d) : k->count >> (8 * (d - 8))) & 0xFF);
}

/* Below this, introsort is as fast and needs no memory. */
#define WC_RADIX_MIN 1024

/* The whole vocabulary's order (ef_counter_export), in O(n): an LSD radix sort of (count,
 * 8-byte prefix) keys, one pass per key byte that differs between words (one histogram pass
 * finds them: a small vocabulary's counts skip most), then introsort on each run of words
 * whose counts and prefixes are equal (longer words, rare). A count of two million distinct
 * words took a quarter less CPU than with introsort alone (docs/benchmarks.md). Falls back to
 * wc_sort when memory is short. */
static void wc_radix_sort(ef_word_count *a, size_t n) {
    wc_key *keys = malloc(2 * n * sizeof *keys);
    size_t (*hist)[256] = calloc(16, sizeof *hist);
    if (!keys || !hist) {
        free(keys);
        free(hist);
        wc_sort(a, n, 2 * (64 - __builtin_clzll(n)));
        return;
    }
    wc_key *src = keys, *dst = keys + n;
    for (size_t i = 0; i < n; i++) {
        src[i] = (wc_key){~a[i].count, key_prefix(&a[i].word), i};
        for (unsigned d = 0; d < 16; d++)
            hist[d][wc_key_byte(&src[i], d)]++;
    }
    for (unsigned d = 0; d < 16; d++) {
        size_t *h = hist[d];
        if (h[wc_key_byte(&src[0], d)] == n)
            continue; /* every word has this byte: the pass would move nothing */
        size_t sum = 0;
        for (unsigned b = 0; b < 256; b++) {
            size_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[h[wc_key_byte(&src[i], d)]++] = src[i];
        wc_key *t = src;
        src = dst;
        dst = t;
    }
    /* dst is free now: the words' old order, to gather from */
    ef_word_count *old = (ef_word_count *)dst;
    _Static_assert(sizeof(ef_word_count) <= sizeof(wc_key), "the spare key buffer holds the words");
    memcpy(old, a, n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = old[src[i].at];
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && src[j].count == src[i].count && src[j].prefix == src[i].prefix)
            j++;
        if (j - i > 1)
            wc_sort(a + i, j - i, 2 * (64 - __builtin_clzll(j - i)));
        i = j;
    }
    free(keys);
    free(hist);
}

EF_API ptrdiff_t ef_counter_export(const ef_counter *c, ef_word_count *out, size_t cap) {
    if (!c || (!out && cap))
        return EF_EINVAL;
    size_t distinct = ef_counter_distinct(c);
    size_t k = distinct < cap ? distinct : cap;
    if (k == 0)
        return 0;
    size_t n = 0;
    for (uint32_t p = 0; p < c->nparts; p++) {
        const ef__part *pt = &c->parts[p];
        for (uint32_t i = 0; i < pt->n; i++) {
            const ef__entry *e = &pt->entries[i];
            ef_word_count x = {{pt->arena + e->off, e->len}, e->count};
            if (n < k) {
                out[n++] = x;
                if (n == k && k < distinct)
                    for (size_t j = k / 2; j-- > 0;)
                        heap_sift(out, k, j);
            } else if (wc_before(&x, &out[0])) {
                /* top-k: keep the k best in a heap, so no allocation and O(n log k) */
                out[0] = x;
                heap_sift(out, k, 0);
            }
        }
    }
    if (k == distinct && k >= WC_RADIX_MIN)
        wc_radix_sort(out, k);
    else if (k == distinct)
        wc_sort(out, k, 2 * (64 - __builtin_clzll(k)));
    else
        heap_sort_out(out, k);
    return (ptrdiff_t)k;
}
