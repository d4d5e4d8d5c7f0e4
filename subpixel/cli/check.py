"""``subpixel check``: every installed backend against the NumPy reference."""

from __future__ import annotations

import argparse

from ..backends import available_backends
from ._common import UserError, add_backends, usable_backend

# (op, numpy shape, factor, spatial_dims, layout)
CASES = [
    ("shuffle", (2, 12, 3, 4), (2, 3), 2, "channels_first"),
    ("shuffle", (2, 3, 4, 12), (2, 3), 2, "channels_last"),
    ("unshuffle", (2, 2, 6, 9), 3, 2, "channels_first"),
    ("unshuffle", (3, 8, 2), 2, 1, "channels_last"),
    ("shuffle", (1, 16, 2, 1, 3), 2, 3, "channels_first"),
]


def arguments(p: argparse.ArgumentParser) -> None:
    add_backends(
        p, help="check only this backend (repeatable); one that cannot run here fails the check"
    )


def known_answer() -> list[str]:
    """The NumPy reference on the worked example of docs/conventions.md."""
    import numpy as np

    from ..ops import shuffle

    x = np.arange(8).reshape(1, 8, 1, 1)
    problems = []
    if shuffle(x, 2)[0].tolist() != [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]:
        problems.append("numpy CRD differs from the worked example")
    if shuffle(x, 2, order="DCR")[0].tolist() != [[[0, 2], [4, 6]], [[1, 3], [5, 7]]]:
        problems.append("numpy DCR differs from the worked example")
    return problems


def _check_backend(backend) -> tuple[str, str]:
    import numpy as np

    from .. import ops

    rng = np.random.default_rng(0)
    passed = total = 0
    failures: list[str] = []
    for op, shape, factor, d, layout in CASES:
        for order in ("CRD", "DCR"):
            a = rng.permutation(int(np.prod(shape))).astype(np.float32).reshape(shape)
            kw = dict(spatial_dims=d, layout=layout, order=order)
            expected = getattr(ops, op)(a, factor, **kw)
            total += 1
            try:
                got = backend.to_numpy(getattr(ops, op)(backend.from_numpy(a), factor, **kw))
                if got.shape == expected.shape and np.array_equal(got, expected):
                    passed += 1
                else:
                    failures.append(f"{op} {layout} {order}")
            except Exception as exc:  # a backend failing a case is the finding reported
                failures.append(f"{op} {layout} {order}: {type(exc).__name__}: {exc}")
    status = "ok" if passed == total else "MISMATCH: " + "; ".join(failures[:3])
    return f"{passed}/{total}", status


def run(args: argparse.Namespace) -> int:
    requested = args.backend is not None
    names = args.backend or available_backends()
    rows = []
    failed = False
    for name in names:
        try:
            backend = usable_backend(name)
        except UserError as exc:
            rows.append((name, "-", str(exc)))
            failed |= requested  # a backend asked for by name must run
            continue
        score, status = _check_backend(backend)
        rows.append((name, score, status))
        failed |= status != "ok"
    width = max([7, *(len(r[0]) for r in rows)])
    print(f"{'backend':<{width}}  cases   result")
    for name, score, status in rows:
        print(f"{name:<{width}}  {score:<7} {status}")
    problems = known_answer()
    for p in problems:
        print(f"error: {p}")
    failed |= bool(problems)
    print("check FAILED" if failed else "all backends agree with the NumPy reference")
    return 1 if failed else 0
