"""subpixel.rewrite.torch on small models: the phased form keeps the state dict and the
memory format, every rewrite carries the replaced module's hooks, modes are checked."""

from __future__ import annotations

import pytest

from adapters import requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import torch

from subpixel.layers.torch import PhasedConvTranspose
from subpixel.rewrite.torch import replace_conv_transpose, replace_pixel_shuffle


def test_phased_conv_transpose_keeps_state_dict_and_memory_format():
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 4, 2, 1), torch.nn.ReLU())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    replace_conv_transpose(model, mode="phases")
    assert isinstance(model[0], PhasedConvTranspose)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    x = torch.randn(2, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    assert model(x).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"^`mode` must be 'subpixel', 'phases' or 'fastest'"):
        replace_conv_transpose(model, mode="fast")
    with pytest.raises(ValueError, match=r"^`conv_transpose` must be a ConvTranspose"):
        PhasedConvTranspose(torch.nn.ConvTranspose2d(4, 3, 3, stride=1))


@pytest.mark.parametrize("mode", ["subpixel", "phases", "fastest", "shuffle"])
def test_rewrites_carry_the_replaced_modules_hooks(mode):
    """Forward, pre-forward and full backward hooks registered on a replaced module run
    on its replacement, with the same values, and their handles still remove them; the
    timing of `fastest` does not call them."""
    torch.manual_seed(0)
    if mode == "shuffle":
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
        x = torch.randn(1, 3, 5, 6, requires_grad=True)
    else:
        model = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1))
        x = torch.randn(1, 4, 5, 6, requires_grad=True)
    target = model[-1]
    seen: dict[str, list] = {"pre": [], "out": [], "grad": []}
    handles = [
        target.register_forward_pre_hook(lambda m, args: seen["pre"].append(args[0].detach())),
        target.register_forward_hook(lambda m, args, out: seen["out"].append(out.detach())),
        target.register_full_backward_hook(lambda m, gi, go: seen["grad"].append(go[0].clone())),
    ]
    want = model(x)
    want.square().sum().backward()
    assert [len(v) for v in seen.values()] == [1, 1, 1]
    if mode == "shuffle":
        replace_pixel_shuffle(model)
    else:
        replace_conv_transpose(model, mode=mode, example=x.detach() if mode == "fastest" else None)
    assert model[-1] is not target or mode == "fastest"  # fastest may keep the original
    # `fastest` runs the model on the example once (no gradients), its timing never
    runs = 2 if mode == "fastest" else 1
    assert [len(v) for v in seen.values()] == [runs, runs, 1]
    got = model(x)
    got.square().sum().backward()
    assert [len(v) for v in seen.values()] == [runs + 1, runs + 1, 2]
    for values in seen.values():
        for value in values[1:]:
            torch.testing.assert_close(value, values[0], rtol=1e-5, atol=1e-5)
    for h in handles:
        h.remove()
    model(x).sum().backward()
    assert [len(v) for v in seen.values()] == [runs + 1, runs + 1, 2]
