"""elasticflow.Counter: feeding, merging, serializing, ownership of the C handle."""

from __future__ import annotations

import gc
import threading

import pytest

import elasticflow
from elasticflow import Counter, ElasticFlowError, ErrorCode
from conftest import naive_count


def test_words_straddle_feeds_and_finish_counts_the_last(tricky_text):
    for text, piece in ((tricky_text[:50_000], 7), (tricky_text, 4093)):  # pieces cut inside words
        with Counter() as c:
            for i in range(0, len(text), piece):
                c.feed(text[i : i + piece])
            c.finish()
            assert c.most_common() == naive_count(text)
            assert c.total == sum(n for _, n in naive_count(text))
            assert len(c) == len(naive_count(text))


def test_pending_word_until_finish():
    with Counter() as c:
        c.feed(b"alpha be")
        assert c.most_common() == [(b"alpha", 1)]
        c.feed(b"ta\n")
        assert c.most_common() == [(b"alpha", 1), (b"beta", 1)]
        c.feed(b"gamma")
        c.finish()
        assert c[b"gamma"] == 1 and b"gamma" in c and b"delta" not in c


def test_buffers_of_any_kind():
    text = b"one two two three three three"
    for data in (text, bytearray(text), memoryview(text), memoryview(bytearray(text)), memoryview(text)[0:]):
        with Counter() as c:
            c.feed(data)
            c.finish()
            assert c.most_common() == [(b"three", 3), (b"two", 2), (b"one", 1)]
    ba = bytearray(text)
    with Counter() as c:
        c.feed(ba)
    ba.extend(b" more")  # the buffer is not held after the call


def test_lowercase_and_most_common_n():
    with Counter(lowercase=True) as c:
        assert c.lowercase
        c.feed(b"B a A b C")
        c.finish()
        assert c.most_common(2) == [(b"a", 2), (b"b", 2)]
        assert c.most_common(0) == []
        assert c.most_common(100) == [(b"a", 2), (b"b", 2), (b"c", 1)]


def test_merge_equals_counting_together(tricky_text):
    half = len(tricky_text) // 2
    cut = tricky_text.index(b" ", half)  # merged halves equal the whole only if cut between words
    with Counter(partitions=4) as a, Counter(partitions=16) as b:
        a.feed(tricky_text[:cut])
        a.finish()
        b.feed(tricky_text[cut:])
        b.finish()
        a.merge(b)
        assert a.most_common() == naive_count(tricky_text)
        a.merge(a)  # into itself: every count doubles
        assert a.most_common() == [(w, 2 * n) for w, n in naive_count(tricky_text)]
    with pytest.raises(TypeError):
        Counter().merge(b"not a counter")


@pytest.mark.parametrize("partitioned", [False, True])
def test_serialize_round_trip(tricky_text, partitioned):
    with Counter() as c:
        c.feed(tricky_text)
        c.finish()
        data = c.serialize(partitioned=partitioned)
        assert data[:4] == (b"EFCP" if partitioned else b"EFCT")
        with Counter.deserialize(data, partitions=8) as d:
            assert d.most_common() == c.most_common()
            assert d.merge_serialized(data) == len(c)
            assert d.most_common() == [(w, 2 * n) for w, n in c.most_common()]


def test_malformed_table_is_refused_and_changes_nothing():
    with Counter() as c:
        c.add(b"kept", 5)
        good = c.serialize()
        for bad in (b"", b"EFCT", good[:-1], b"XXXX" + good[4:], good + b"\x00"):
            with pytest.raises(ElasticFlowError) as caught:
                c.merge_serialized(bad)
            assert caught.value.code in (ErrorCode.FORMAT, ErrorCode.BADMAGIC)
            assert caught.value.strerror and caught.value.strerror in str(caught.value)
        assert c.most_common() == [(b"kept", 5)]
        with pytest.raises(ElasticFlowError):
            Counter.deserialize(b"garbage!")


def test_overflow_is_refused():
    with Counter() as c:
        c.add(b"big", 2**64 - 1)
        with pytest.raises(ElasticFlowError) as caught:
            c.add(b"more", 1)
        assert caught.value.code == ErrorCode.OVERFLOW
        assert c.most_common() == [(b"big", 2**64 - 1)]


def test_word_too_long():
    with Counter(max_word=4) as c:
        with pytest.raises(ElasticFlowError) as caught:
            c.feed(b"abcdefgh")
        assert caught.value.code == ErrorCode.WORDTOOLONG


def test_bad_options():
    with pytest.raises(ValueError):
        Counter(partitions=5000)
    with pytest.raises(ValueError):
        Counter().add(b"", 1)


def test_closed_counter_refuses_and_close_twice_is_fine():
    c = Counter()
    c.feed(b"x")
    c.close()
    c.close()
    assert c.closed
    for call in (lambda: c.feed(b"y"), c.finish, c.most_common, c.serialize, lambda: len(c)):
        with pytest.raises(ValueError, match="closed counter"):
            call()
    with Counter() as d:
        pass
    assert d.closed


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        import os

        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_dropped_counters_are_freed():
    """Counters dropped without close() are freed by the GC: 300 counters of 40,000 distinct
    words each would hold several hundred MB if they leaked."""
    words = b" ".join(b"w%d" % i for i in range(40_000))
    for _ in range(20):  # warm up the allocator
        c = Counter()
        c.feed(words)
    del c
    gc.collect()
    before = _rss_bytes()
    for _ in range(300):
        c = Counter()
        c.feed(words)
        c.finish()
        assert len(c) == 40_000
    del c
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 64 << 20, f"RSS grew by {grown >> 20} MiB"


def test_threads_sharing_one_counter_take_turns():
    lines = [b"alpha beta gamma %d\n" % (i % 50) for i in range(2000)]
    with Counter() as shared:
        def work():
            for line in lines:
                shared.feed(line)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shared.finish()
        assert shared.most_common() == naive_count(b"".join(lines) * 4)


def test_count_bytes_matches_counter(tricky_text):
    assert elasticflow.count_bytes(tricky_text, top=10) == naive_count(tricky_text)[:10]
