"""The porting zoo (tests/porting/test_zoo.py): one small super-resolution network
written in many styles of PyTorch, Keras 3 and Flax NNX, each case ported with
`subpixel.port_weights` and classified as the test does: "ported right" (the target
gives the source's output on a fresh random input of another size), "refused"
(ValueError, the target's weights bit for bit as they were) or "silent" (anything
else).  One row per pair of frameworks and direction; the median port time is that
of `port_weights` alone (tracing both models, converting, writing, checking).

    python benchmarks/port_zoo.py      # needs torch, keras (TensorFlow), jax and flax

Exits 1 if a case is silent or does not end as the zoo expects.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "_support"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "porting"))  # the zoo
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import test_zoo as zoo

from _timing import machine_line, table

HEADER = ["source -> target", "cases", "ported right", "refused", "silent", "median port (s)"]


def main() -> int:
    results = []
    for case in zoo.CASES:
        outcome = zoo.attempt(case)
        results.append((case, outcome))
        print(f"{outcome.kind:8} {outcome.seconds:5.2f} s  {case.id}", file=sys.stderr, flush=True)
    rows = []
    pairs = [f"{s} -> {t}" for s in zoo.FRAMEWORKS for t in zoo.FRAMEWORKS]
    for pair in [*pairs, "all"]:
        got = [(c, o) for c, o in results if pair in ("all", c.pair)]
        kinds = [o.kind for _, o in got]
        median = statistics.median(o.seconds for _, o in got)
        rows.append([pair, str(len(got)), str(kinds.count("ported")), str(kinds.count("refused")),
                     str(kinds.count("silent")), f"{median:.2f}"])  # fmt: skip
    print(machine_line())
    print()
    print(table(rows, HEADER))
    print()
    other = [(c, o) for c, o in results if o.kind != "ported"]
    if other:
        why = [" ".join(o.detail.replace("|", "/").split())[:160] for _, o in other]
        print(table([[c.id, c.expect, o.kind, w] for (c, o), w in zip(other, why)],
                    ["case", "expected", "outcome", "why"]))  # fmt: skip
    wrong = [c.id for c, o in results if o.kind == "silent" or o.kind != c.expect]
    if wrong:
        print(f"\n{len(wrong)} case(s) silent or not as expected: {', '.join(wrong)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
