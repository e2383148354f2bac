#!/usr/bin/env python3
"""The reference word count that `elasticflow count` must equal byte for byte.

Words are maximal runs of bytes other than the six ASCII whitespace bytes (space, \\t, \\n, \\v,
\\f, \\r): bytes.split() with no argument splits on exactly those. With lowercasing, only A-Z
change: bytes.lower() touches nothing else. Output: `word count` lines, count descending, then
word bytes ascending (Python compares bytes like memcmp, a prefix first).

usage: reference_count.py [--no-lowercase] FILE
"""
import collections
import sys

WHITESPACE = b" \t\n\v\f\r"


def check_assumptions():
    """Fail loudly if this Python's bytes methods ever disagree with the rule above."""
    splits_on = bytes(b for b in range(256) if len(bytes([0x61, b, 0x62]).split()) == 2)
    lowered = bytes(b for b in range(256) if bytes([b]).lower() != bytes([b]))
    assert splits_on == bytes(sorted(WHITESPACE)), f"bytes.split() splits on {splits_on!r}"
    assert lowered == bytes(range(0x41, 0x5B)), f"bytes.lower() changes {lowered!r}"


def main(argv):
    lowercase = "--no-lowercase" not in argv
    paths = [a for a in argv if a != "--no-lowercase"]
    if len(paths) != 1:
        sys.exit(__doc__.strip().splitlines()[-1])
    check_assumptions()
    counts = collections.Counter()
    with open(paths[0], "rb") as f:
        # \n is a separator, so no word straddles two lines.
        for line in f:
            counts.update((line.lower() if lowercase else line).split())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    sys.stdout.buffer.write(b"".join(b"%s %d\n" % item for item in ordered))


if __name__ == "__main__":
    main(sys.argv[1:])
