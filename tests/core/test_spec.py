"""The spec module on its own: plans and argument normalisation (pure Python)."""

from __future__ import annotations

import pytest

from subpixel._core import spec as _spec


def test_plan_is_minimal_for_pixel_shuffle():
    plan = _spec.make_plan("shuffle", (2, 8, 3, 5), 2)
    # batch and channel merge; (r, r) split; interleave with (H, W)
    assert plan.src_shape == (4, 2, 2, 3, 5)
    assert plan.perm == (0, 3, 1, 4, 2)
    assert plan.dst_shape == (4, 3, 2, 5, 2)
    assert plan.out_shape == (2, 2, 6, 10)


def test_plan_drops_unit_factors_and_merges():
    # factor 1 on H: H and W stay adjacent on both sides and merge
    plan = _spec.make_plan("shuffle", (6, 4, 5), (1, 3), layout="channels_first")
    assert plan.out_shape == (2, 4, 15)
    assert plan.src_shape == (2, 3, 20)
    assert plan.perm == (0, 2, 1)


def test_factor_one_is_identity_plan():
    plan = _spec.make_plan("unshuffle", (2, 3, 4, 4), 1)
    assert plan.is_identity and plan.out_shape == (2, 3, 4, 4)


def test_dcr_channels_last_2d_is_depth_to_space():
    plan = _spec.make_plan("shuffle", (2, 3, 4, 12), 2, layout="channels_last", order="DCR")
    assert plan.out_shape == (2, 6, 8, 3)
    # (N*H, W, r, r*C) -> (N*H, r, W, r*C)
    assert plan.src_shape == (6, 4, 2, 6) and plan.perm == (0, 2, 1, 3)


def test_unknown_batch_dimension():
    plan = _spec.make_plan("shuffle", (None, 8, 3, 5), 2)
    assert plan.out_shape == (None, 2, 6, 10)
    assert plan.src_shape[0] is None


def test_unknown_spatial_dimension_skips_divisibility():
    plan = _spec.make_plan("unshuffle", (1, 2, None, 4), 2)
    assert plan.out_shape == (1, 8, None, 2)


def test_unknown_channels_refused():
    with pytest.raises(ValueError, match="known number of channels"):
        _spec.make_plan("shuffle", (1, None, 4, 4), 2)


def test_spatial_dims_default():
    assert _spec.normalize_spatial_dims(None, 2) == 2
    assert _spec.normalize_spatial_dims(None, (2, 3, 1)) == 3
    assert _spec.normalize_factor([2, 3], 2) == (2, 3)


def test_lists_and_numpy_ints_accepted():
    np = pytest.importorskip("numpy")
    plan = _spec.make_plan("shuffle", (1, 6, 2, 2), [np.int64(2), 3])
    assert plan.factor == (2, 3) and type(plan.factor[0]) is int


def test_plans_are_cached():
    a = _spec.make_plan("shuffle", (1, 4, 2, 2), 2)
    assert _spec.make_plan("shuffle", (1, 4, 2, 2), 2) is a


def test_kernel_size_errors_name_kernel_size():
    np = pytest.importorskip("numpy")
    import subpixel

    with pytest.raises(
        ValueError, match=r"^`kernel_size` must be a positive integer.*Received: kernel_size=0$"
    ):
        subpixel.SubPixelConv(2, 2, 0, factor=2)
    with pytest.raises(
        ValueError, match=r"^`kernel_size` must have one entry per spatial dimension"
    ):
        subpixel.SubPixelConv(2, 2, (3, 3), factor=2, spatial_dims=3)
    with pytest.raises(ValueError, match=r"^`factor` must be a positive integer"):
        subpixel.SubPixelConv(2, 2, 3, factor=0)
    del np


def test_channel_divisibility_has_one_message():
    with pytest.raises(
        ValueError,
        match=r"^`w` has 6 channels on axis 1, which is not divisible by prod\(factor\)=4 "
        r"for factor=\(2, 2\)\. Received: w\.shape=\(1, 6, 3, 3\)$",
    ):
        _spec.check_divisible_channels("w", 6, (2, 2), (1, 6, 3, 3), "channels on axis 1")
    assert _spec.check_divisible_channels("weight", 12, (2, 3), (12, 1, 1, 1)) == 2


def test_flat_steps_never_exceed_the_input_rank():
    """The `flat` lowering's plan, executed with NumPy, equals the oracle for every
    layout, order, op, factor and 1-, 2-, 3-D data, and no step has a higher rank
    than a batched input (an unbatched one may need one more)."""
    import itertools
    import math

    import numpy as np

    from subpixel._core import lowering as _lowering

    from reference import reference

    for d, op, layout, order in itertools.product(
        (1, 2, 3), ("shuffle", "unshuffle"), ("channels_first", "channels_last"), ("CRD", "DCR")
    ):
        for r in ((2,) * d, (3,) * d, (2, 3, 1)[:d], (1, 2, 3)[:d]):
            for channels, batch in ((1, (2,)), (3, (2,)), (2, ())):
                low = (3, 2, 4)[:d]
                hi = tuple(s * f for s, f in zip(low, r))
                c = channels * math.prod(r) if op == "shuffle" else channels
                spatial = low if op == "shuffle" else hi
                shape = (
                    (*batch, c, *spatial) if layout == "channels_first" else (*batch, *spatial, c)
                )
                plan = _spec.make_plan(op, shape, r, d, layout, order)
                a = np.random.default_rng(0).standard_normal(shape)
                y = a
                for step_shape, perm in _lowering.flat_steps(plan):
                    assert len(step_shape) <= len(shape) + (0 if batch else 1)
                    y = y.reshape(step_shape).transpose(perm)
                expected = reference(op, a, r, spatial_dims=d, layout=layout, order=order)
                np.testing.assert_array_equal(y.reshape(plan.out_shape), expected)


def test_one_hot_kernel_is_a_shuffle():
    import numpy as np

    from subpixel._core import lowering as _lowering

    from reference import conv_transpose_ref, reference

    for order in ("CRD", "DCR"):
        for dense in (False, True):
            kernel, groups = _lowering.one_hot_kernel(3, (2, 3), order, dense=dense)
            x = np.random.default_rng(1).standard_normal((2, 18, 4, 5))
            got = conv_transpose_ref(x, kernel, None, (2, 3), 0, 0, groups)
            np.testing.assert_array_equal(got, reference("shuffle", x, (2, 3), order=order))
