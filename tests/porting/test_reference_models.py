"""Reference architectures written from their published definitions (random
weights, no downloads), ported torch -> Keras, Keras -> torch and torch -> Flax."""

from __future__ import annotations

import numpy as np
import pytest

import subpixel

from zoo import (
    CASES,
    TorchEDSRUp,
    TorchESPCN,
    TorchUNet,
    keras_espcn,
    nhwc,
    ported,
    run_torch,
    torch_model,
)


def _ported_from_torch(name: str, framework: int):
    """The reference model ``name`` in PyTorch (random weights), its ``framework``'s
    version (1: Keras, 2: Flax) ported from it on an example: ``(source, target, x)``."""
    case = CASES[name]
    source, target = torch_model(case[0]), case[framework]()
    x = np.random.default_rng(0).standard_normal(case[3]).astype(np.float32)
    ported(source, target, example=x)
    return source, target, x


@pytest.mark.parametrize("name", list(CASES))
def test_torch_to_keras_and_back(name):
    source, target, x = _ported_from_torch(name, 1)
    np.testing.assert_allclose(
        np.asarray(target(nhwc(x), training=False)),
        nhwc(run_torch(source, x)),
        rtol=1e-5,
        atol=1e-5,
    )
    back = CASES[name][0]().eval()
    ported(target, back, example=nhwc(x))
    np.testing.assert_allclose(run_torch(back, x), run_torch(source, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[2] is not None])
def test_torch_to_flax(name):
    _ported_from_torch(name, 2)


def test_float64_ports_to_1e_12():
    source = torch_model(TorchESPCN).double()
    target = keras_espcn(dtype="float64")
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 5))
    subpixel.port_weights(source, target, example=x)
    np.testing.assert_allclose(
        np.asarray(target(nhwc(x))), nhwc(run_torch(source, x)), rtol=1e-12, atol=1e-12
    )


def test_mismatched_architectures_copy_nothing():
    source = torch_model(TorchESPCN)
    target = keras_espcn(c=1)  # first conv takes 1 channel, not 3
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(
        ValueError, match=r"the architectures differ at conv1 -> .*: `weight` is \(64, 3, 5, 5\)"
    ):
        subpixel.port_weights(source, target)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_models_with_different_layer_counts_name_the_first_unpaired_layer():
    with pytest.raises(
        ValueError, match=r"has 5 parameterised layers and `target` 3: .*pair 2: up"
    ):
        subpixel.port_weights(torch_model(TorchUNet), torch_model(lambda: TorchEDSRUp(3)))


def test_what_is_no_model_is_refused():
    with pytest.raises(
        TypeError, match=r"^`target` must be a PyTorch nn.Module, a Keras 3 model or a Flax"
    ):
        subpixel.port_weights(torch_model(TorchESPCN), object())
