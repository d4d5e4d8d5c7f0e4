"""The audit on files written by real exporters and converters (tests/audit/factory.py):
every site found and named as the file's runtime shows it, no false sites, and each
deliberately swapped pair diagnosed at its site."""

from __future__ import annotations

import pytest

from subpixel import audit


def _matches(got, want) -> bool:
    kind, factor, order, layout = got
    if (kind, tuple(factor)) != (want.kind, tuple(want.factor)):
        return False
    # one channel: both orders (and, for a reshape, both layouts) move the data alike
    if want.channels == 1:
        return True
    layouts = {want.layout, *(want.boundary_layouts or ())}
    return order == want.order and layout in layouts


def test_every_site_is_found_and_named_and_nothing_else(verified_fixtures, capsys):
    found = right = false_positive = expected = 0
    wrong = []
    for f in verified_fixtures:
        report = audit(f.path, shapes=tuple(f.input_shape))
        got = [(s.kind, s.factor, s.order, s.layout) for s in report.sites]
        expected += len(f.sites)
        found += min(len(got), len(f.sites))
        false_positive += max(len(got) - len(f.sites), 0)
        ok = len(got) == len(f.sites) and all(_matches(g, w) for g, w in zip(got, f.sites))
        right += sum(_matches(g, w) for g, w in zip(got, f.sites))
        if not ok:
            wrong.append(f"{f.name}: got {got}, want {[w.without_channels() for w in f.sites]}")
    with capsys.disabled():
        print(
            f"\naudit matrix: {len(verified_fixtures)} files, {expected} sites: {found} found, "
            f"{right} named right, {false_positive} false sites"
        )
    assert not wrong, "\n".join(wrong[:20])


def test_swapped_sites_are_diagnosed_and_float_noise_is_not(swapped_pairs):
    wrong = []
    for pair in swapped_pairs:
        report = audit(pair.target_path, against=pair.source_path)
        if pair.kind is None:
            if not report.agrees or report.exit_status != 0:
                wrong.append(f"{pair.name}: unswapped but {report.first_divergence}")
            continue
        diagnoses = [s.comparison.diagnosis for s in report.sites if s.comparison is not None]
        diagnoses += [c.diagnosis for _, c in report.unpaired]
        text = " ".join(diagnoses)
        want = "CRD<->DCR swap" if pair.kind == "order" else "layout"
        if report.exit_status != 1 or want not in text:
            wrong.append(f"{pair.name} ({pair.kind}): {report.first_divergence or 'no divergence'}")
    assert not wrong, "\n".join(wrong)


def test_against_the_source_model_itself(swapped_pairs):
    torch = pytest.importorskip("torch")
    for pair in swapped_pairs:
        if pair.kind != "order" or not isinstance(pair.source_model, torch.nn.Module):
            continue
        report = audit(pair.target_path, against=pair.source_model, example=pair.example)
        assert report.exit_status == 1 and "CRD<->DCR swap" in report.first_divergence, pair.name
        return
    pytest.skip("no order-swapped pair with a PyTorch source in this matrix")
