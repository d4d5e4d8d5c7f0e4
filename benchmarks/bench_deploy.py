"""The table of docs/deploy.md: the bundled ESPCN x3 exported with every lowering and
order, to ONNX (from PyTorch, dynamo exporter, run in ONNX Runtime) and to LiteRT
(from Keras, TensorFlow backend, run in the LiteRT interpreter): ops in the graph,
highest tensor rank, max difference from the source framework on the bundled sample,
and latency relative to the source framework, measured in the same process.

    python benchmarks/bench_deploy.py      # runs the parts whose frameworks import
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from subpixel import deploy
from subpixel.models import ESPCN

from _timing import best_time, machine_line, table

LOWERINGS = ["native", "reshape", "flat", "conv"]


def sample_lr() -> np.ndarray:
    from subpixel.cli.export import _sample_luma

    return _sample_luma(3)[1][None, None]


def onnx_rows(x: np.ndarray, repeat: int) -> list[list[str]]:
    import onnx
    import onnxruntime as ort
    import torch

    rows = []
    model = ESPCN.pretrained(3)
    example = torch.from_numpy(x)
    for lowering in LOWERINGS:
        for order in ("CRD", "DCR"):
            module = model.to_torch(lowering, order)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "m.onnx")
                deploy.torch_to_onnx(module, example, path, dynamo=True)
                graph = onnx.load(path)
                inferred = onnx.shape_inference.infer_shapes(graph).graph
                values = [*inferred.value_info, *inferred.input, *inferred.output]
                rank = max(len(v.type.tensor_type.shape.dim) for v in values)
                ops = sorted({n.op_type for n in graph.graph.node})
                session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                (y,) = session.run(None, {"x": x})
                with torch.no_grad():
                    source = module(example).numpy()
                    t_source = best_time(lambda: module(example), repeat)
                t_ort = best_time(lambda: session.run(None, {"x": x}), repeat)
            rows.append(
                [
                    "ONNX Runtime",
                    lowering,
                    order,
                    ", ".join(ops),
                    str(rank),
                    f"{np.abs(y - source).max():.1e}",
                    f"{t_ort / t_source:.2f}",
                ]
            )
    return rows


def tflite_rows(x: np.ndarray, repeat: int) -> list[list[str]]:
    model = ESPCN.pretrained(3)
    nhwc = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    rows = []
    for lowering in LOWERINGS:
        for order in ("CRD", "DCR"):
            keras_model = model.to_keras(lowering, order)
            with tempfile.TemporaryDirectory() as folder:
                lite = os.path.join(folder, "m.tflite")
                deploy.keras_to_tflite(keras_model, lite)
                blob = Path(lite).read_bytes()
            y, ranks = deploy.run_litert(blob, nhwc), deploy.tensor_ranks(blob, nhwc)
            source = np.asarray(keras_model(nhwc))
            it = deploy.tflite_interpreter(blob, delegates=True)
            inp = it.get_input_details()[0]
            it.resize_tensor_input(inp["index"], list(nhwc.shape))
            it.allocate_tensors()
            it.set_tensor(inp["index"], nhwc)
            t_lite = best_time(it.invoke, repeat)
            t_source = best_time(lambda: keras_model(nhwc, training=False), repeat)
            rows.append(
                [
                    "LiteRT (XNNPACK)",
                    lowering,
                    order,
                    ", ".join(sorted(deploy.tflite_ops(blob))),
                    str(max(ranks)),
                    f"{np.abs(y - source).max():.1e}",
                    f"{t_lite / t_source:.2f}",
                ]
            )
    return rows


def main() -> int:
    repeat = 10
    x = sample_lr()
    rows: list[list[str]] = []
    if all(importlib.util.find_spec(m) for m in ("torch", "onnx", "onnxruntime", "onnxscript")):
        rows += onnx_rows(x, repeat)
    if importlib.util.find_spec("tensorflow"):
        rows += tflite_rows(x, repeat)
    print(f"ESPCN x3 on the bundled sample's LR luminance {x.shape}, best of {repeat}")
    print(machine_line())
    header = ["runtime", "lowering", "order", "ops", "max rank", "max diff", "time / source"]
    print(table(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
