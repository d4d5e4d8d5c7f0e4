"""Keras 3 layers over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`;
the same numbers on every Keras backend (TensorFlow, JAX, PyTorch), unlike
``keras.ops.depth_to_space`` whose channels_first order depends on the backend.
Also Keras's side of moving layers between frameworks (:func:`to_agnostic`,
:func:`from_agnostic`).

Kernels use Keras's conv layout ``(*kernel, C_in, C_out * prod(factor))``; the
output channels are in ``order``.  Layers serialise with ``get_config`` and
``.keras`` files (registered under the package name ``subpixel``).

>>> import numpy as np
>>> from subpixel.layers.keras import SubPixelConv
>>> SubPixelConv(3, 3, factor=2)(np.zeros((1, 8, 8, 16), "float32")).shape
(1, 16, 16, 3)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from .. import ops, weights
from .._core import spec as _spec
from .._core.channels import icnr_index
from .._core.layer_spec import LayerSpec, check_plain_conv, check_rewrite_mode, example_error
from .._core.lowering import Lowering, check_native, has_native_op, normalize_lowering
from .._core.spec import Layout, Order
from . import _keras_lowering

if TYPE_CHECKING:
    from ..layer import SubPixelConv as AgnosticSubPixelConv

__all__ = [
    "ICNR",
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv",
    "from_agnostic",
    "from_espcn",
    "replace_conv_transpose",
    "replace_pixel_shuffle",
    "sub_pixel_of",
    "to_agnostic",
]

_register = keras.saving.register_keras_serializable(package="subpixel")


def _data_format(data_format: str | None) -> Layout:
    return _spec.normalize_layout(data_format or keras.config.image_data_format())


@_register
class ICNR(keras.initializers.Initializer):
    """ICNR for a Keras conv kernel ``(*k, C_in, C_out * prod(factor))``: a base
    kernel from ``initializer`` copied to every phase (the rule of
    :func:`subpixel._core.channels.icnr_index`)."""

    def __init__(self, factor: Any, order: Order = "CRD", initializer: Any = "he_normal") -> None:
        self.factor = factor
        self.order = _spec.normalize_order(order)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        r = _spec.normalize_factor(self.factor, len(shape) - 2)
        base_channels = _spec.check_divisible_channels("shape", shape[-1], r, shape)
        base = self.initializer((*shape[:-1], base_channels), dtype=dtype)
        index = icnr_index(base_channels, r, self.order)
        return keras.ops.take(base, keras.ops.convert_to_tensor(index), axis=-1)

    def get_config(self) -> dict:
        return {
            "factor": self.factor,
            "order": self.order,
            "initializer": keras.initializers.serialize(self.initializer),
        }


def _check_lowering(lowering: Any, factor: tuple[int, ...], data_format: str) -> Lowering:
    lowering = normalize_lowering(lowering)
    check_native(lowering, factor)
    if lowering == "native" and data_format != "channels_last":
        raise ValueError(
            "`lowering='native'` needs data_format='channels_last' (TensorFlow's depth_to_space "
            f"and TFLite's DEPTH_TO_SPACE are NHWC). Received: data_format={data_format!r}"
        )
    return lowering


@_register
class PixelShuffle(keras.layers.Layer):
    """:func:`subpixel.shuffle` as a Keras layer.  ``lowering``: how a TFLite/LiteRT
    conversion writes it (``"auto"``, ``"native"``, ``"reshape"``, ``"flat"``,
    ``"conv"``; docs/deploy.md); the numbers are the same in every lowering."""

    op = "shuffle"

    def __init__(
        self,
        factor: Any,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        data_format: str | None = None,
        lowering: Lowering = "auto",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        d = _spec.normalize_spatial_dims(spatial_dims, factor)
        self.factor = _spec.normalize_factor(factor, d)
        self.spatial_dims = d
        self.order = _spec.normalize_order(order)
        self.data_format = _data_format(data_format)
        self.lowering = _check_lowering(lowering, self.factor, self.data_format)

    def call(self, x, mask=None):  # `mask`: accepted (and ignored) where a Lambda stood
        return _keras_lowering.rearrange(
            x, self.op, self.factor, self.spatial_dims, self.order, self.data_format, self.lowering
        )

    def compute_output_shape(self, input_shape):
        plan = _spec.make_plan(
            self.op, input_shape, self.factor, self.spatial_dims, self.data_format, self.order
        )
        return plan.out_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            factor=list(self.factor),
            spatial_dims=self.spatial_dims,
            order=self.order,
            data_format=self.data_format,
            lowering=self.lowering,
        )
        return config


@_register
class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as a Keras layer."""

    op = "unshuffle"


@_register
class SubPixelConv(keras.layers.Layer):
    """Sub-pixel convolution: LR conv with ``filters * prod(factor)`` outputs, then
    the shuffle.  ``kernel_initializer="icnr"`` (default) is ICNR over He normal.

    Args:
        filters: output channels after the shuffle.
        kernel_size: int or one per spatial dim (their count is the layer's rank).
        factor: int or one per spatial dim.
        padding: ``"same"``, ``"valid"``, ints or ``(before, after)`` pairs.
        order: ``"CRD"`` or ``"DCR"``; data_format: Keras's (default channels_last).
        blur: replication pad + 2x2 average after the shuffle.
        crop: pixels removed from the output, ``(before, after)`` per spatial dim.
        activation: applied to the layer's output, as in Keras's conv layers.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        factor: Any,
        padding: Any = "same",
        order: Order = "CRD",
        data_format: str | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "icnr",
        bias_initializer: Any = "zeros",
        blur: bool = False,
        spatial_dims: int | None = None,
        crop: Any = None,
        activation: Any = None,
        lowering: Lowering = "auto",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = LayerSpec.create(
            None,
            filters,
            kernel_size,
            factor,
            spatial_dims=spatial_dims,
            order=order,
            padding=padding,
            crop=crop,
            blur=blur,
            bias=use_bias,
            layout=_data_format(data_format),
        )
        if kernel_initializer == "icnr":
            kernel_initializer = ICNR(self.spec.factor, self.spec.order)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.activation = keras.activations.get(activation)
        self.lowering = _check_lowering(lowering, self.spec.factor, self.spec.layout)

    filters = property(lambda self: self.spec.out_channels)
    kernel_size = property(lambda self: self.spec.kernel_size)
    factor = property(lambda self: self.spec.factor)
    padding = property(lambda self: self.spec.padding)
    order = property(lambda self: self.spec.order)
    data_format = property(lambda self: self.spec.layout)
    use_bias = property(lambda self: self.spec.bias)
    blur = property(lambda self: self.spec.blur)
    crop = property(lambda self: self.spec.crop)
    spatial_dims = property(lambda self: self.spec.spatial_dims)

    def build(self, input_shape) -> None:
        c_in = input_shape[1] if self.data_format == "channels_first" else input_shape[-1]
        self.spec = self.spec.replace(in_channels=c_in)
        lr = self.spec.lr_channels
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, c_in, lr), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(lr,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, x):
        spec = self.spec
        d = spec.spatial_dims
        if self.lowering == "auto" and not _keras_lowering.tracing_for_tflite():
            weight = keras.ops.transpose(self.kernel, (d + 1, d, *range(d)))  # -> (O, I, *k)
            bias = None if self.bias is None else keras.ops.add(self.bias, 0)  # a backend tensor
            return self.activation(ops.sub_pixel_conv(x, weight, bias, **spec.op_kwargs()))
        return self.activation(self._lowered(x))

    def _lowered(self, x):
        """The forward pass as Keras ops, the shuffle in ``lowering`` (what a TFLite
        conversion records)."""
        spec = self.spec
        kernel = keras.ops.cast(self.kernel, x.dtype)
        bias = None if self.bias is None else keras.ops.cast(self.bias, x.dtype)
        tracing = _keras_lowering.tracing_for_tflite()
        native = self.lowering == "native" or (
            self.lowering == "auto"
            and spec.layout == "channels_last"
            and has_native_op(spec.factor)
        )
        folded = native and tracing and spec.order == "CRD"
        if folded:  # put the kernel's channels in depth_to_space's DCR order: no extra op
            kernel, bias = _keras_lowering.fold_kernel(kernel, bias, spec.factor)
        channels_first = spec.layout == "channels_first"
        if any(a or b for a, b in spec.padding):
            pads = [list(p) for p in spec.padding]
            x = keras.ops.pad(
                x, [[0, 0], [0, 0], *pads] if channels_first else [[0, 0], *pads, [0, 0]]
            )
        y = keras.ops.conv(x, kernel, padding="valid", data_format=spec.layout)
        if bias is not None:
            shape = (-1,) + (1,) * spec.spatial_dims if channels_first else (-1,)
            y = y + keras.ops.reshape(bias, shape)
        y = _keras_lowering.rearrange(
            y,
            "shuffle",
            spec.factor,
            spec.spatial_dims,
            spec.order,
            spec.layout,
            self.lowering,
            folded=folded,
        )
        if spec.blur:
            y = ops.blur(y, spatial_dims=spec.spatial_dims, layout=spec.layout)
        if spec.has_crop:
            first = 2 if channels_first else 1
            key = [slice(None)] * (first + spec.spatial_dims + (0 if channels_first else 1))
            for k, (a, b) in enumerate(spec.crop):
                key[first + k] = slice(a, -b if b else None)
            y = y[tuple(key)]
        return y

    def compute_output_shape(self, input_shape):
        plan = _spec.make_conv_plan(
            input_shape,
            (self.spec.lr_channels, None, *self.kernel_size),
            None,
            self.factor,
            self.padding,
            self.spatial_dims,
            self.data_format,
            self.order,
            crop=self.crop,
            check_channels=False,
        )
        return plan.out_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            factor=list(self.factor),
            padding=[list(p) for p in self.padding],
            order=self.order,
            data_format=self.data_format,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            blur=self.blur,
            spatial_dims=self.spatial_dims,
            crop=[list(p) for p in self.crop],
            activation=keras.activations.serialize(self.activation),
            lowering=self.lowering,
        )
        return config


# ---------------------------------------------------------------------------
# moving layers between frameworks: Keras's side
# ---------------------------------------------------------------------------


def _numpy(v: Any) -> Any:
    return None if v is None else np.asarray(keras.ops.convert_to_numpy(v))


def from_agnostic(
    layer: AgnosticSubPixelConv, data_format: str | None = None, dtype: Any = None
) -> SubPixelConv:
    """A built Keras :class:`SubPixelConv` holding a :class:`subpixel.SubPixelConv`'s
    parameters, in ``data_format`` (default: the layer's layout) and ``dtype`` (a
    Keras dtype or policy; default: the parameters' dtype)."""
    spec = layer.spec
    data_format = data_format or spec.layout
    k = SubPixelConv(
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        padding=spec.padding,
        order=spec.order,
        data_format=data_format,
        use_bias=spec.bias,
        blur=spec.blur,
        crop=spec.crop,
        kernel_initializer="zeros",
        dtype=dtype or layer.dtype.name,
    )
    spatial = (None,) * spec.spatial_dims
    k.build(
        (None, spec.inputs, *spatial)
        if data_format == "channels_first"
        else (None, *spatial, spec.inputs)
    )
    params = [weights.convert_layout(layer.weight, src="torch", dst="keras")]
    if layer.bias is not None:
        params.append(layer.bias)
    k.set_weights([p.astype(k.variable_dtype) for p in params])
    return k


_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def to_agnostic(layer: Any, *, factor: Any = None, order: Order = "CRD") -> AgnosticSubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a built Keras :class:`SubPixelConv`, or
    from a built plain ``keras.layers.Conv1D/2D/3D`` (stride 1, undilated,
    ungrouped, no activation) read as the LR convolution of a sub-pixel conv with
    ``factor`` and ``order``.  Anything it cannot represent exactly is refused."""
    from ..layer import SubPixelConv as Agnostic

    if not isinstance(layer, (SubPixelConv, *_CONVS)):
        if isinstance(layer, keras.layers.Layer) and "Transpose" in type(layer).__name__:
            raise ValueError(
                f"`layer` is a transposed convolution ({type(layer).__name__}): use "
                "SubPixelConv.from_conv_transpose(kernel, bias, stride=..., padding=..., "
                "source='tensorflow')"
            )
        raise ValueError(
            "`layer` must be a subpixel.layers.keras.SubPixelConv or a keras.layers.Conv1D/2D/3D. "
            f"Received: layer of type {type(layer).__module__}.{type(layer).__qualname__}"
        )
    if not layer.built:
        raise ValueError(f"`layer` {layer.name!r} is not built yet: call it on an input first")
    if layer.activation is not keras.activations.linear:
        raise ValueError(
            f"`layer` {layer.name!r} applies activation {layer.activation.__name__!r}, which a "
            "framework-free SubPixelConv does not: apply it after the converted layer"
        )
    kernel = weights.convert_layout(_numpy(layer.kernel), src="keras", dst="torch")
    bias = _numpy(layer.bias) if layer.bias is not None else None
    if isinstance(layer, SubPixelConv):
        return Agnostic.from_spec(layer.spec, kernel, bias)
    check_plain_conv("Keras", factor, layer.strides, layer.dilation_rate, layer.groups)
    if layer.padding not in ("same", "valid"):
        raise ValueError(f"`layer` has padding={layer.padding!r}; only 'same' and 'valid' convert")
    return Agnostic.from_weights(
        kernel, bias, factor=factor, order=order, padding=layer.padding, layout=layer.data_format
    )


def from_espcn(model: Any, lowering: Lowering = "auto", order: Order = "CRD") -> keras.Model:
    """The bundled ESPCN (:class:`subpixel.models.ESPCN`) as a Keras model in NHWC, its
    last layer a :class:`SubPixelConv` with ``lowering`` and ``order`` (the same numbers
    in either): ``(N, H, W, 1)`` luminance in [0, 1] in, ``(N, H * scale, W * scale, 1)``
    out."""
    p = model.head_params(order)
    inputs = keras.Input((None, None, 1))
    h = keras.layers.Rescaling(1.0, offset=-model.mean)(inputs)
    conv1 = keras.layers.Conv2D(64, 5, padding="same", activation="tanh")
    conv2 = keras.layers.Conv2D(32, 3, padding="same", activation="tanh")
    head = SubPixelConv(
        1, 3, model.scale, padding=1, order=order, lowering=lowering, data_format="channels_last"
    )
    h = head(conv2(conv1(h)))
    outputs = keras.layers.Rescaling(1.0, offset=model.mean)(h)
    for layer, name in ((conv1, "conv1"), (conv2, "conv2"), (head, "conv3")):
        kernel = weights.convert_layout(p[f"{name}.weight"], src="torch", dst="keras")
        layer.set_weights([kernel, p[f"{name}.bias"]])
    return keras.Model(inputs, outputs)


# ---------------------------------------------------------------------------
# rewriting a model's upsampling layers, exactly
# ---------------------------------------------------------------------------

_CONV_T = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def _replaceable(layer: Any) -> bool:
    return (
        isinstance(layer, _CONV_T)
        and any(s > 1 for s in layer.strides)
        and all(v == 1 for v in layer.dilation_rate)
        and layer.padding in ("same", "valid")
    )


def sub_pixel_of(layer: Any) -> SubPixelConv:
    """The exact sub-pixel form of a built ``Conv1D/2D/3DTranspose`` (stride > 1,
    undilated), with its activation, name and data format."""
    from ..layer import SubPixelConv as Agnostic

    kernel = _numpy(layer.kernel)
    bias = _numpy(layer.bias) if layer.bias is not None else None
    agnostic = Agnostic.from_conv_transpose(
        kernel,
        bias,
        stride=tuple(layer.strides),
        padding=layer.padding,
        output_padding=None if layer.output_padding is None else tuple(layer.output_padding),
        source="tensorflow",
        layout=layer.data_format,
    )
    new = from_agnostic(agnostic, data_format=layer.data_format, dtype=layer.dtype_policy)
    new.activation = layer.activation
    new.name = layer.name
    return new


def _rewrite(model: Any, replace: Any) -> Any:
    """A functional or Sequential copy of ``model`` with ``replace(layer)`` (None: keep)
    for each layer; the other layers keep their weights."""
    _check_model(model)
    kept: list[tuple[Any, Any]] = []  # (original, its clone) of the layers not replaced

    def clone(layer: Any) -> Any:
        new = replace(layer)
        if new is not None:
            new.trainable = getattr(layer, "trainable", True)
            return new
        if isinstance(layer, keras.layers.Lambda):  # the same function, not a
            new = keras.layers.Lambda(  # serialised one (Keras refuses to load it)
                layer.function,
                output_shape=layer._output_shape,
                mask=layer.mask,
                arguments=layer.arguments,
                name=layer.name,
                dtype=layer.dtype_policy,
            )
        else:
            new = layer.__class__.from_config(layer.get_config())
        kept.append((layer, new))
        return new

    # nested models are cloned layer by layer; graph operations (keras.ops calls) too
    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for old, new in kept:
        if isinstance(old, keras.layers.Layer) and old.weights:
            new.set_weights(old.get_weights())
    return copy


def _check_model(model: Any) -> None:
    """A functional or Sequential Keras model that has been built."""
    if not _is_graph(model):
        kind = type(model)
        why = (
            " (a subclassed model's `call` is code, which cannot be rewritten: rewrite its "
            "layers with `sub_pixel_of`)"
            if isinstance(model, keras.Model)
            else ""
        )
        raise TypeError(
            f"`model` must be a functional or Sequential Keras model{why}. "
            f"Received: model of type {kind.__module__}.{kind.__qualname__}"
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "`model` must be built (give the Sequential model a `keras.Input`, or call it "
            f"once): its layers have no weights yet. Received: model {model.name!r}"
        )


def _is_graph(model: Any) -> bool:
    """Whether ``model`` is a functional or Sequential model (a graph of layers)."""
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - a Keras that moved it
        return hasattr(model, "operations") and hasattr(model, "inputs")
    return isinstance(model, (keras.Sequential, Functional))


def replace_conv_transpose(model: Any, *, mode: str = "subpixel", example: Any = None) -> Any:
    """A copy of a functional or Sequential ``model`` whose stride > 1
    ``Conv1D/2D/3DTranspose`` layers are their exact sub-pixel equivalents (a
    :class:`SubPixelConv` with the crop it needs and the same activation).

    ``mode="fastest"``: run ``model`` on ``example``, time each layer and its sub-pixel
    form on the layer's own input (each compiled by the backend as a one-layer model)
    and replace only the layers whose sub-pixel form is faster."""
    check_rewrite_mode(mode, example, ("subpixel", "fastest"))
    _check_model(model)
    faster = _faster_as_sub_pixel(model, example) if mode == "fastest" else None

    def replace(layer: Any) -> Any:
        if not _replaceable(layer) or (faster is not None and id(layer) not in faster):
            return None
        return sub_pixel_of(layer)

    return _rewrite(model, replace)


def _layers_below(model: Any) -> list[Any]:
    """Every layer of ``model``, those of its nested models included (once each)."""
    out: dict[int, Any] = {}
    for layer in model.layers:
        if hasattr(layer, "layers") and not isinstance(layer, SubPixelConv):
            out.update((id(sub), sub) for sub in _layers_below(layer))
        else:
            out[id(layer)] = layer
    return list(out.values())


@contextlib.contextmanager
def _watching(layers: list[Any], seen: Callable[[Any, tuple], None]) -> Iterator[None]:
    """Each of ``layers`` calls ``seen(layer, args)`` when it runs, for a while: its
    ``call`` wrapped on the instance (past Keras's attribute tracking), then put back."""

    def watched(layer: Any) -> Any:
        call = layer.call

        def noted(*args: Any, **kwargs: Any) -> Any:
            seen(layer, args)
            return call(*args, **kwargs)

        return noted

    own = [(layer, vars(layer).get("call")) for layer in layers]
    try:
        for layer in layers:
            object.__setattr__(layer, "call", watched(layer))
        yield
    finally:
        for layer, call in own:
            if call is not None:
                object.__setattr__(layer, "call", call)
            elif "call" in vars(layer):
                object.__delattr__(layer, "call")


def _faster_as_sub_pixel(model: Any, example: Any) -> set[int]:
    """The ids of ``model``'s replaceable layers (nested models' included) whose
    sub-pixel form runs faster on the input the layer gets from ``example``."""
    from .._core.timing import fastest

    layers = [layer for layer in _layers_below(model) if _replaceable(layer)]
    if not layers:
        return set()
    inputs: dict[int, np.ndarray] = {}

    def seen(layer: Any, args: tuple) -> None:
        if id(layer) not in inputs:
            inputs[id(layer)] = keras.ops.convert_to_numpy(args[0])

    try:
        if len(model.inputs) > 1 and isinstance(example, (list, tuple)):
            x: Any = [np.asarray(e) for e in example]
        else:
            x = np.asarray(example)
        with _watching(layers, seen):
            model(x, training=False)
    except Exception as e:
        raise example_error(e, example) from None
    chosen = set()
    for layer in layers:
        if id(layer) not in inputs:
            continue  # not reached by the example: kept
        x = inputs[id(layer)]
        twin = layer.__class__.from_config(layer.get_config())  # the user's layer untouched
        twin.build(x.shape)
        twin.set_weights(layer.get_weights())
        runs = []
        for candidate in (twin, sub_pixel_of(layer)):
            inp = keras.Input(x.shape[1:], dtype=layer.compute_dtype)
            one = keras.Model(inp, candidate(inp))
            runs.append(lambda one=one, x=x: one.predict_on_batch(x))
        if fastest(runs) == 1:
            chosen.add(id(layer))
    return chosen


def shuffle_op(operation: Any) -> tuple[str, Order, tuple[int, ...], str] | None:
    """``(op, order, factor, data_format)`` if ``operation`` (a layer of a functional
    model, or one of its graph operations) is a pixel shuffle (``op="shuffle"``) or
    unshuffle: subpixel's :class:`PixelShuffle`/:class:`PixelUnshuffle`, or
    ``keras.ops.depth_to_space``/``space_to_depth`` or a ``Lambda`` (calling
    ``tf.nn.depth_to_space``, say) that does exactly a shuffle, which is found by
    running it on a probe and comparing with :func:`subpixel.shuffle` in each order and
    layout its static shapes allow."""
    if isinstance(operation, PixelShuffle):  # and PixelUnshuffle, a subclass
        return operation.op, operation.order, operation.factor, operation.data_format
    if isinstance(operation, keras.layers.Layer) and not isinstance(operation, keras.layers.Lambda):
        return None
    nodes = getattr(operation, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1 or len(nodes[0].outputs) != 1:
        return None
    shape_in, shape_out = nodes[0].input_tensors[0].shape, nodes[0].outputs[0].shape
    for data_format in ("channels_last", "channels_first"):
        guess = _shuffle_guess(tuple(shape_in), tuple(shape_out), data_format)
        if guess is None:
            continue
        op, factor, probe_shape = guess
        n = math.prod(probe_shape)  # exact in float32, of both signs (so a relu shows)
        values = np.arange(n) % 2**24 - min(n, 2**24) // 2
        probe = values.astype(np.float32).reshape(probe_shape)
        try:
            got = keras.ops.convert_to_numpy(operation(probe))
        except Exception:  # it cannot run on the probe: not a shuffle we know
            continue
        fn = ops.shuffle if op == "shuffle" else ops.unshuffle
        order: Order
        for order in ("CRD", "DCR"):
            want = fn(probe, factor, layout=data_format, order=order)
            if got.shape == want.shape and np.array_equal(got, want):
                return op, order, factor, data_format
    return None


def _shuffle_guess(
    shape_in: tuple, shape_out: tuple, data_format: str
) -> tuple[str, tuple[int, ...], tuple[int, ...]] | None:
    """``(op, factor, probe shape)`` that static shapes allow for a shuffle in
    ``data_format``, or None."""
    d = len(shape_in) - 2
    if d < 1 or len(shape_out) != len(shape_in):
        return None
    channel = -1 if data_format == "channels_last" else 1
    spatial = range(1, 1 + d) if data_format == "channels_last" else range(2, 2 + d)
    c_in, c_out = shape_in[channel], shape_out[channel]
    if not (isinstance(c_in, int) and isinstance(c_out, int)) or min(c_in, c_out) < 1:
        return None
    op = "shuffle" if c_in > c_out else "unshuffle"
    big, small = max(c_in, c_out), min(c_in, c_out)
    if big % small or big == small:
        return None
    q = big // small
    factor = []
    for axis in spatial:
        a, b = shape_in[axis], shape_out[axis]
        if isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0:
            r, rest = divmod(b, a) if op == "shuffle" else divmod(a, b)
            factor.append(r if rest == 0 else 0)
        else:
            r = round(q ** (1 / d))
            factor.append(r if r**d == q else 0)
    if 0 in factor or math.prod(factor) != q:
        return None
    probe = [1, *shape_in[1:]]
    for axis, r in zip(spatial, factor):
        if not isinstance(probe[axis], int):
            probe[axis] = 2 * r  # divisible for an unshuffle
    return op, tuple(factor), tuple(probe)


def replace_pixel_shuffle(model: Any, *, lowering: Lowering = "auto") -> Any:
    """A copy of a functional or Sequential ``model`` whose pixel shuffles written
    with Keras or TensorFlow (``keras.ops.depth_to_space``/``space_to_depth``, or
    ``Lambda`` layers doing exactly a shuffle, as :func:`shuffle_op` finds) are
    subpixel's :class:`PixelShuffle`/:class:`PixelUnshuffle` in the same order and
    layout, so that ``lowering=`` applies to them (the same numbers)."""

    def replace(operation: Any) -> Any:
        if isinstance(operation, PixelShuffle):
            return None
        found = shuffle_op(operation)
        if found is None:
            return None
        op, order, factor, data_format = found
        cls = PixelShuffle if op == "shuffle" else PixelUnshuffle
        return cls(
            factor, order=order, data_format=data_format, lowering=lowering, name=operation.name
        )

    return _rewrite(model, replace)
