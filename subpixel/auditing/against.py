"""A model compared with its source on one probe input, site by site.

Both models run on the same input (moved between layouts where the two differ).
Each of the source's sites is paired with the target's next data movement of the
same sizes; the target's tensors around it decide, exactly: a pure movement moves
values without arithmetic, so the target agrees with the source at a site when its
output equals the source's movement applied to the target's own input, bit for bit.
Where it does not, the candidates that explain the target's output are tried in
turn: the other channel order (CRD <-> DCR), the other layout, both, or another
permutation of the site's channels; the first that fits is the diagnosis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .._core.compare import max_difference
from ..movement import Chain, Graph, Movement, index_map, steps
from .report import AuditReport, Comparison, Site
from .sources import Opened

__all__ = ["compare"]


def _layout_relation(source: Opened, target: Opened) -> tuple[str, str] | None:
    """(source's, target's) image layouts where the two models' inputs differ in
    layout (an NCHW source converted to an NHWC file); None where they are alike."""
    s, t = source.inputs[0][1], target.inputs[0][1]
    if tuple(s) == tuple(t) or len(s) < 3 or len(s) != len(t):
        return None
    if tuple(np.moveaxis(np.empty(s, bool), 1, -1).shape) == tuple(t):
        return ("channels_first", "channels_last")
    if tuple(np.moveaxis(np.empty(s, bool), -1, 1).shape) == tuple(t):
        return ("channels_last", "channels_first")
    return None


def _to_source(a: np.ndarray, relation: tuple[str, str] | None) -> np.ndarray:
    if relation is None or a.ndim < 3:
        return a
    return np.moveaxis(a, -1, 1) if relation[1] == "channels_last" else np.moveaxis(a, 1, -1)


def _to_target(a: np.ndarray, relation: tuple[str, str] | None) -> np.ndarray:
    if relation is None or a.ndim < 3:
        return a
    return np.moveaxis(a, 1, -1) if relation[1] == "channels_last" else np.moveaxis(a, -1, 1)


def probe_inputs(source: Opened, seed: int = 0) -> list[np.ndarray]:
    """One random input per input of ``source`` (floats in [0, 1), integers 0..9)."""
    rng = np.random.default_rng(seed)
    out = []
    for _, shape, dtype in source.inputs:
        dt = np.dtype(dtype if dtype != "other" else "float32")
        out.append(
            rng.random(shape).astype(dt)
            if dt.kind == "f"
            else rng.integers(0, 10, shape).astype(dt)
        )
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def tolerance(graph: Graph, reference: np.ndarray) -> float:
    """What the target's arithmetic allows its output to differ from the source's:
    relative to the output's scale, 1e-4 for float32 graphs, 1e-2 where float16
    tensors are on the way, 0.1 where integer-quantized ones are."""
    dtypes = {v.dtype for v in graph.values.values() if not v.constant} | {
        v.dtype for v in graph.values.values() if v.constant and v.quant is None
    }
    quantized = any(v.quant is not None and not v.constant for v in graph.values.values())
    rtol = 0.1 if quantized else 1e-2 if dtypes & {"float16", "bfloat16"} else 1e-4
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return rtol * max(scale, 1e-6)


_RELATIONS: tuple[tuple[str, str] | None, ...] = (
    None,
    ("channels_first", "channels_last"),
    ("channels_last", "channels_first"),
)


def _site_relation(
    m: Movement, chain: Chain, graph: Graph, relation: tuple[str, str] | None
) -> tuple[bool, tuple[str, str] | None]:
    """Whether ``chain`` has the sizes of the source's site ``m``, and the layout
    relation its tensors have to the source's there: the models' own first, else
    another (a converter may run a site in the other layout than the model's input,
    as litert-torch runs NCHW shuffles between NHWC convolutions)."""
    a, b = graph.values[chain.input].probe_shape, graph.values[chain.output].probe_shape
    if a is None or b is None:
        return False, relation
    for rel in (relation, *(r for r in _RELATIONS if r != relation)):
        a2 = _to_source(np.empty(a, bool), rel).shape
        b2 = _to_source(np.empty(b, bool), rel).shape
        if tuple(a2) == m.in_shape and tuple(b2) == m.out_shape:
            return True, rel
    return False, relation


def _candidates(chains: list[Chain]) -> list[Chain]:
    """Each chain, and runs of up to four chains where one's output is the next's
    input (a site the analysis cut in two, as a shuffle in the wrong layout and the
    reshape that makes its sizes fit)."""
    out = []
    for k, c in enumerate(chains):
        out.append(c)
        run = c
        for nxt in chains[k + 1 : k + 4]:
            if nxt.input != run.output:
                break
            run = Chain((*run.nodes, *nxt.nodes), (*run.values, *nxt.values[1:]), None)
            out.append(run)
    return out


def _apply(index: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.asarray(x).ravel()[index.ravel()].reshape(index.shape)


def _candidate(m: Movement, order: str, layout: str, x_shape: tuple[int, ...]) -> np.ndarray | None:
    """The index map of ``m``'s kind and factor with another ``order``/``layout``, on an
    input of ``x_shape`` (None where the sizes do not allow it)."""
    op = steps.depth_to_space if m.kind == "shuffle" else steps.space_to_depth
    base = np.arange(math.prod(x_shape)).reshape(x_shape)
    try:
        return op(m.factor or (), order, layout)(base)  # type: ignore[arg-type]
    except ValueError:
        return None


def _channel_permutation(
    m: Movement, index: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray | None:
    """A permutation ``p`` of the packed channels with ``y == movement(x[:, p])``
    (channels on the packed side's axis), if one exists."""
    inverse = np.empty(index.size, np.int64)
    inverse[index.ravel()] = np.arange(index.size)
    if m.kind == "shuffle":
        z = y.ravel()[inverse].reshape(x.shape)  # y moved back before the shuffle
        packed, ref = z, x
        axis = 1 if m.layout == "channels_first" else x.ndim - 1
    else:
        packed, ref = y, _apply(index, x)
        axis = 1 if m.layout == "channels_first" else y.ndim - 1
    cols_p = np.moveaxis(packed, axis, 0).reshape(packed.shape[axis], -1)
    cols_r = np.moveaxis(ref, axis, 0).reshape(ref.shape[axis], -1)
    lookup: dict[bytes, list[int]] = {}
    for i, col in enumerate(cols_r):
        lookup.setdefault(np.ascontiguousarray(col).tobytes(), []).append(i)
    perm = []
    for col in cols_p:
        found = lookup.get(np.ascontiguousarray(col).tobytes())
        if not found:
            return None
        perm.append(found.pop(0))
    return np.asarray(perm)


def _fix(m: Movement, what: str, src_order: str, tgt_order: str) -> str:
    f = m.factor
    if what == "order":
        axis = 0 if m.kind == "shuffle" else 1
        where = (
            "output channels of the convolution feeding it"
            if m.kind == "shuffle"
            else "input channels of the convolution it feeds"
        )
        layer = "PixelShuffle" if m.kind == "shuffle" else "PixelUnshuffle"
        return (
            f"reorder the {where}: subpixel.weights.reorder_channels(w, {f}, "
            f"src={src_order!r}, dst={tgt_order!r}, axis={axis}) (and its bias), or write the "
            f"site in the source's order: subpixel.layers.keras.{layer}({_factor(f)}, "
            f"order={src_order!r}) in Keras, subpixel.layers.torch.{layer}({_factor(f)}, "
            f"order={src_order!r}) in PyTorch"
        )
    if what == "layout":
        return (
            "the converter read the tensor in the other layout: convert with the source's "
            "layout kept (e.g. onnx2tf's -kat/--keep_shape_absolutely_input_names for the "
            "input), or write the shuffle with lowering='reshape' or 'flat' so that no "
            "layout-dependent op is left to translate"
        )
    return what


def _factor(f: tuple[int, ...] | None) -> str:
    f = tuple(f or ())
    return str(f[0]) if f and all(v == f[0] for v in f) else str(f)


def compare(report: AuditReport, target: Opened, source: Opened, source_sites: list[Chain]) -> None:
    """Fill ``report``'s comparisons (``target`` is the audited model)."""
    relation = _layout_relation(source, target)
    feeds = probe_inputs(source)
    t_feeds = [_to_target(x, relation) for x in feeds]
    t_feeds = [
        x.astype(np.dtype(dt if dt != "other" else "float32"))
        for x, (_, _, dt) in zip(t_feeds, target.inputs)
    ]
    chains = _candidates(report.movements_all)
    # pair each source site with the target's next chain of the same sizes
    pairs: list[tuple[Chain, Chain | None]] = []
    site_relation: dict[int, tuple[str, str] | None] = {}
    start = 0
    for s_chain in source_sites:
        assert s_chain.movement is not None
        found = None
        for k in range(start, len(chains)):
            fits, rel = _site_relation(s_chain.movement, chains[k], target.graph, relation)
            if fits:
                found, start = chains[k], k + 1
                site_relation[id(s_chain)] = rel
                break
        pairs.append((s_chain, found))
    s_names = [n for c in source_sites for n in (c.input, c.output)] + source.graph.outputs[:1]
    t_names = [
        n for _, c in pairs if c is not None for n in (c.input, c.output)
    ] + target.graph.outputs[:1]
    s_vals = source.run(feeds, s_names)
    t_vals = target.run(t_feeds, t_names)
    out_s = s_vals[source.graph.outputs[0]]
    out_t = _to_source(t_vals[target.graph.outputs[0]], relation)
    report.output_diff = max_difference(out_s, out_t)
    report.output_tolerance = tolerance(target.graph, out_s)
    by_chain = {id(s.chain): s for s in report.sites}
    results: list[tuple[int, Site | None, Chain | None, Comparison]] = []
    # an unshuffle whose output's channels come in another order is right where the
    # layer after it takes them so: the next place the two models are compared tells
    pending: list[tuple[int, Comparison]] = []

    def resolve(agrees: bool) -> None:
        for i, good in pending:
            if agrees:
                results[i] = (*results[i][:3], good)
        pending.clear()

    for k, (s_chain, t_chain) in enumerate(pairs):
        m = s_chain.movement
        assert m is not None
        site = by_chain.get(id(t_chain)) if t_chain is not None else None
        if t_chain is None:
            comp = Comparison(
                "missing",
                diagnosis=f"the source's site {k} ({m.describe()}) has no counterpart of its sizes in the target",
            )
            results.append((k, None, None, comp))
            continue
        x_s, y_s = s_vals[s_chain.input], s_vals[s_chain.output]
        rel = site_relation.get(id(s_chain), relation)
        x_t, y_t = _to_source(t_vals[t_chain.input], rel), _to_source(t_vals[t_chain.output], rel)
        if pending:
            tol = tolerance(target.graph, x_s)
            resolve(_match_channels(x_s, x_t, _channel_axis(m, x_s), tol) is not None)
        index = index_map(source.graph, s_chain.nodes, s_chain.input)
        assert index is not None
        comp = _judge(m, index, x_s, y_s, x_t, y_t, target, t_chain, t_vals, relation)
        results.append((k, site, t_chain, comp))
        if m.kind == "unshuffle" and comp.status == "diverges":
            axis = 1 if m.layout == "channels_first" else y_s.ndim - 1
            perm = _match_channels(y_s, y_t, axis, tolerance(target.graph, y_s))
            if perm is not None:
                good = Comparison(
                    "verified",
                    0.0,
                    comp.input_diff,
                    "its output's channels come in another order than the source's, which the "
                    f"layer after it takes (a reorder folded into that layer: {_short(perm)})",
                )
                pending.append((len(results) - 1, good))
    resolve(report.output_diff <= report.output_tolerance)
    first = ""
    for k, site, t_chain, comp in results:
        if site is None:
            report.unpaired.append((k, comp))
        else:
            site.comparison = comp
        if first:
            continue
        if comp.status in ("diverges", "missing"):
            where = (
                f"site {site.index}"
                if site is not None
                else f"the target's nodes {', '.join(n.name for n in t_chain.nodes)}"
                if t_chain is not None
                else "no counterpart"
            )
            first = f"{where} (source site {k}): {comp.diagnosis}"
        elif comp.status == "inputs differ":
            first = (
                f"before source site {k}: its input already differs by {comp.input_diff:.3g} "
                "(not at a depth-to-space site)"
            )
    if not first and not report.output_diff <= report.output_tolerance:
        first = (
            f"after the last site: the outputs differ by {report.output_diff:.3g} "
            f"(tolerance {report.output_tolerance:.3g}); not at a depth-to-space site"
        )
    report.first_divergence = first


def _channel_axis(m: Movement, x: np.ndarray) -> int:
    """The channel axis of a site's input (source layout)."""
    layout = m.layout if m.kind == "shuffle" else m.other_layout
    return 1 if layout == "channels_first" else x.ndim - 1


def _match_channels(ref: np.ndarray, got: np.ndarray, axis: int, tol: float) -> np.ndarray | None:
    """``p`` with ``got[.., p[c], ..] ~= ref[.., c, ..]`` for every channel (within
    ``tol``), or None; the identity where the two already agree."""
    if ref.shape != got.shape:
        return None
    a = np.moveaxis(np.asarray(ref, np.float64), axis, 0).reshape(ref.shape[axis], -1)
    b = np.moveaxis(np.asarray(got, np.float64), axis, 0).reshape(got.shape[axis], -1)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    if max_difference(a, b) <= tol:
        return np.arange(a.shape[0])
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    best = np.argmin(d2, axis=1)
    if len(set(best.tolist())) != len(best) or max_difference(a, b[best]) > tol:
        return None
    return best


def _does(m: Movement, x: np.ndarray, y: np.ndarray) -> tuple[str, str] | None:
    """The (order, layout) of ``m``'s kind and factor that turns ``x`` into ``y``
    exactly, if one does; in the other layout, also where its output is then only
    reshaped to ``y``'s sizes (a converter that read the data in the wrong layout and
    made the sizes fit again)."""
    for o in ("CRD", "DCR"):
        for lay in ("channels_first", "channels_last"):
            cand = _candidate(m, o, lay, x.shape)
            if cand is None or cand.size != y.size:
                continue
            got = _apply(cand, x)
            if cand.shape == y.shape and _same(got, y):
                return o, lay
            if lay != m.layout and _same(got.reshape(y.shape), y):
                return o, lay
    return None


def _needs(m: Movement, x: np.ndarray, y: np.ndarray, tol: float) -> tuple[str, str] | None:
    """The (order, layout) that would turn ``x`` into ``y`` (within ``tol``)."""
    for o in ("CRD", "DCR"):
        for lay in ("channels_first", "channels_last"):
            cand = _candidate(m, o, lay, x.shape)
            if (
                cand is not None
                and cand.shape == y.shape
                and max_difference(_apply(cand, x), y) <= tol
            ):
                return o, lay
    return None


def _judge(
    m: Movement,
    index: np.ndarray,
    x_s: np.ndarray,
    y_s: np.ndarray,
    x_t: np.ndarray,
    y_t: np.ndarray,
    target: Opened,
    t_chain: Chain,
    t_vals: dict[str, np.ndarray],
    relation: tuple[str, str] | None,
) -> Comparison:
    """One site: verified where the target's output agrees with the source's (its
    input's channels may come in another order that the site undoes, as in a correct
    conversion that folded a CRD/DCR reorder into the convolution before it); else
    the cause, decided exactly on the target's own tensors."""
    diff_in, diff_out = max_difference(x_s, x_t), max_difference(y_s, y_t)
    tol_in, tol_out = tolerance(target.graph, x_s), tolerance(target.graph, y_s)
    if diff_out <= tol_out:
        note = (
            "its input's channels come in another order than the source's, which the site "
            "puts right (a reorder folded into the layer before it)"
            if diff_in > tol_in
            else ""
        )
        return Comparison("verified", diff_out, diff_in, note)
    # does the target's run move the data as its own graph says?
    t_index = index_map(target.graph, t_chain.nodes, t_chain.input)
    raw_x, raw_y = t_vals[t_chain.input], t_vals[t_chain.output]
    if (
        t_index is not None
        and t_index.shape == raw_y.shape
        and not _same(_apply(t_index, raw_x), raw_y)
    ):
        return Comparison(
            "diverges",
            diff_out,
            diff_in,
            "the target's runtime does not move the data as its own graph says "
            f"({t_chain.movement.describe() if t_chain.movement else 'its ops'})",
            "report it to the runtime's developers; meanwhile write the shuffle with another "
            "lowering (subpixel's lowering='reshape', 'flat' or 'conv')",
        )
    perm = _match_channels(x_s, x_t, _channel_axis(m, x_s), tol_in)
    if perm is None:
        return Comparison("inputs differ", diff_out, diff_in)
    order, f = m.order or "other", "x".join(map(str, m.factor or ()))
    does = _does(m, x_t, y_t)
    needs = _needs(m, x_t, y_s, tol_out)
    what = f"{m.kind} x{f}"
    if np.array_equal(perm, np.arange(len(perm))) and does is not None:
        o, lay = does
        if lay == m.layout and o != order:
            return Comparison(
                "diverges",
                diff_out,
                diff_in,
                f"CRD<->DCR swap: the target applies {o} where the source applies {order} "
                f"({what}, {m.layout} in the source's layout)",
                _fix(m, "order", order, o),
            )
        if lay != m.layout:
            kind = "layout swap" if o == order else "layout and order swap"
            return Comparison(
                "diverges",
                diff_out,
                diff_in,
                f"{kind}: the target applies the {what} ({o}) to its data as if it were {lay}; "
                f"the source's is {m.layout}",
                _fix(m, "layout", order, o),
            )
    if not np.array_equal(perm, np.arange(len(perm))):
        if needs is not None and does is not None:
            return Comparison(
                "diverges",
                diff_out,
                diff_in,
                f"the channels reaching the site come in another order than the source's "
                f"(the layer before it was reordered: {_short(perm)}) and the site applies "
                f"{does[0]} ({does[1]}) where {needs[0]} ({needs[1]}) would put them right",
                f"keep the layer before the site and its {what} in one channel order: "
                "reorder that layer's channels back, or write the site in the other order",
            )
        return Comparison(
            "diverges",
            diff_out,
            diff_in,
            f"the channels reaching the site come in another order than the source's "
            f"({_short(perm)}) and the site does not put them right",
            "reorder the channels of the layer before the site back to the source's order",
        )
    moved = _channel_permutation(m, index, x_t, y_t)
    if moved is not None:
        return Comparison(
            "diverges",
            diff_out,
            diff_in,
            f"the target permutes the site's {len(moved)} packed channels (channel i reads "
            f"the source's channel perm[i], perm = {_short(moved)})",
            "reorder the channels of the convolution next to the site with "
            f"numpy.take(w, perm, axis={0 if m.kind == 'shuffle' else 1}) (and its bias), "
            "perm as above",
        )
    return Comparison(
        "diverges",
        diff_out,
        diff_in,
        "the target's site moves the data in a way no channel order, layout or channel "
        "permutation of the source's site explains",
    )


def _short(perm: Sequence[int] | np.ndarray) -> str:
    items = [int(p) for p in perm]
    return str(items) if len(items) <= 16 else f"[{', '.join(map(str, items[:16]))}, ...]"
