/* libFuzzer target: serialized count tables, EFCT and EFCP (ef_counter_deserialize,
 * ef_counter_partitioned_check, ef_counter_section_check, ef_counter_section_merge), and round
 * trips from text through both serializations.
 *
 * Promises checked (elasticflow.h): a buffer refused leaves the destination unchanged; for EFCP,
 * deserialize accepts exactly what the header check and every section check accept; merging
 * sections the checks accepted never fails (short of memory) and gives the same table as
 * deserialize; a table counted from text survives both serializations word for word. */
#include "elasticflow.h"
#include "fuzz_check.h"

#include <string.h>

enum { EXPORT_CAP = 1 << 14 };

static ef_word_count left[EXPORT_CAP], right[EXPORT_CAP];

/* Same words with the same counts (export is sorted, so the lists compare in order). */
static void check_same(const ef_counter *a, const ef_counter *b) {
    FUZZ_CHECK(ef_counter_distinct(a) == ef_counter_distinct(b));
    FUZZ_CHECK(ef_counter_total(a) == ef_counter_total(b));
    ptrdiff_t n = ef_counter_export(a, left, EXPORT_CAP);
    FUZZ_CHECK(ef_counter_export(b, right, EXPORT_CAP) == n);
    for (ptrdiff_t i = 0; i < n; i++) {
        FUZZ_CHECK(left[i].count == right[i].count && left[i].word.len == right[i].word.len);
        FUZZ_CHECK(memcmp(left[i].word.ptr, right[i].word.ptr, left[i].word.len) == 0);
    }
}

static ef_counter *counter_of(uint32_t partitions) {
    /* Small tables: the default capacity is sized for real steps and would dominate each run. */
    ef_counter_options o = {.partitions = partitions, .initial_capacity = 1};
    ef_counter *c = ef_counter_create(&o);
    FUZZ_CHECK(c != NULL);
    return c;
}

/* The bytes as a buffer from a peer or a checkpoint. */
static void check_buffer(const uint8_t *data, size_t size) {
    ef_counter *dst = counter_of(4);
    static const uint8_t seed[] = "seed";
    FUZZ_CHECK(ef_counter_add(dst, seed, 4, 7) == EF_OK);
    ptrdiff_t r = ef_counter_deserialize(dst, data, size);
    FUZZ_CHECK(r != EF_ENOMEM); /* inputs are small; a table for them always fits */
    if (r < 0) /* refused: unchanged */
        FUZZ_CHECK(ef_counter_distinct(dst) == 1 && ef_counter_total(dst) == 7);

    uint32_t np = 0;
    ptrdiff_t head = ef_counter_partitioned_check(data, size, &np);
    if (head < 0) {
        if (size >= 4 && data[0] == 'E' && data[1] == 'F' && data[2] == 'C' && data[3] == 'P')
            FUZZ_CHECK(r < 0);
        ef_counter_free(dst);
        return;
    }
    FUZZ_CHECK((ptrdiff_t)np == head && np >= 1 && np <= EF_COUNT_PARTITIONS_MAX);
    uint64_t entries = 0;
    int all_pass = 1;
    for (uint32_t p = 0; p < np; p++) {
        ptrdiff_t s = ef_counter_section_check(data, size, p);
        if (s < 0)
            all_pass = 0;
        else
            entries += (uint64_t)s;
    }
    FUZZ_CHECK(ef_counter_section_check(data, size, np) == EF_EINVAL);
    FUZZ_CHECK(all_pass == (r >= 0));
    if (!all_pass) {
        ef_counter_free(dst);
        return;
    }
    FUZZ_CHECK((uint64_t)r == entries);

    /* Check, then merge: every section the checks accepted merges whole. */
    ef_counter *merged = counter_of(np);
    FUZZ_CHECK(ef_counter_add(merged, seed, 4, 7) == EF_OK);
    for (uint32_t p = 0; p < np; p++)
        FUZZ_CHECK(ef_counter_section_merge(merged, data, size, p) ==
                   ef_counter_section_check(data, size, p));
    if (np != 1) {
        ef_counter *wrong = counter_of(np == 2 ? 3 : 2);
        FUZZ_CHECK(ef_counter_section_merge(wrong, data, size, 0) == EF_EINVAL);
        FUZZ_CHECK(ef_counter_distinct(wrong) == 0);
        ef_counter_free(wrong);
    }
    check_same(dst, merged);
    ef_counter_free(merged);
    ef_counter_free(dst);
}

/* Text counted, then both serializations read back into tables of other partition counts. */
static void check_round_trip(const uint8_t *data, size_t size) {
    if (size < 2)
        return;
    ef_counter_options o = {.partitions = 1 + data[0] % 16,
                            .flags = data[1] & 1 ? EF_COUNT_LOWERCASE : 0,
                            .initial_capacity = 1};
    ef_counter *c = ef_counter_create(&o);
    FUZZ_CHECK(c != NULL);
    /* Fed in two pieces, so a word straddling two calls is counted once. */
    size_t half = (size - 2) / 2;
    FUZZ_CHECK(ef_counter_feed(c, data + 2, half) == EF_OK);
    FUZZ_CHECK(ef_counter_feed(c, data + 2 + half, size - 2 - half) == EF_OK);
    FUZZ_CHECK(ef_counter_finish(c) == EF_OK);
    if (ef_counter_distinct(c) > EXPORT_CAP) {
        ef_counter_free(c);
        return;
    }

    static uint8_t buf[1 << 20];
    size_t sz = ef_counter_serialized_size(c);
    FUZZ_CHECK(sz <= sizeof buf);
    FUZZ_CHECK(ef_counter_serialize(c, buf, sz) == (ptrdiff_t)sz);
    ef_counter *back = counter_of(1 + data[0] / 16 % 16);
    FUZZ_CHECK(ef_counter_deserialize(back, buf, sz) == (ptrdiff_t)ef_counter_distinct(c));
    check_same(c, back);
    ef_counter_free(back);

    size_t psz = ef_counter_partitioned_size(c);
    FUZZ_CHECK(psz <= sizeof buf);
    FUZZ_CHECK(ef_counter_serialize_partitioned(c, buf, psz) == (ptrdiff_t)psz);
    FUZZ_CHECK(ef_counter_partitioned_check(buf, psz, NULL) == (ptrdiff_t)o.partitions);
    ef_counter *merged = counter_of(o.partitions);
    for (uint32_t p = 0; p < o.partitions; p++)
        FUZZ_CHECK(ef_counter_section_merge(merged, buf, psz, p) >= 0);
    check_same(c, merged);
    ef_counter_free(merged);
    ef_counter_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_buffer(data, size);
    check_round_trip(data, size);
    return 0;
}
