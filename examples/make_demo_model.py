"""Write examples/demo_cnn.onnx: the small CNN that `make demo` compiles.

    conv 3x3 (3->8) - relu - maxpool 2x2 - conv 3x3 (8->16) - relu - global avgpool - flatten
    - gemm (16->10) - softmax          input "image" 1x3x32x32, output "probs" 1x10

Built with onnx.helper and seeded numpy weights, not torch, so the file is byte-for-byte
reproducible and regenerating it needs only the runtime dependencies. The generated file is
committed; rerun this script (`make demo-model`) only when changing the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17, so older onnxruntime releases load the file too
OUT = Path(__file__).resolve().parent / "demo_cnn.onnx"


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He-initialised weights, so activations (and the softmax input) are of order one."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weights = {
        "conv1.w": _he(rng, (8, 3, 3, 3), 3 * 9),
        "conv1.b": (0.1 * rng.standard_normal(8)).astype(np.float32),
        "conv2.w": _he(rng, (16, 8, 3, 3), 8 * 9),
        "conv2.b": (0.1 * rng.standard_normal(16)).astype(np.float32),
        "fc.w": _he(rng, (10, 16), 16),
        "fc.b": (0.1 * rng.standard_normal(10)).astype(np.float32),
    }
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["image", "conv1.w", "conv1.b"], ["c1"], "conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], "relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], "pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.w", "conv2.b"], ["c2"], "conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], "relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], "gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], "flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], "fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], "softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "demo_cnn",
        inputs=[helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        outputs=[helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="modelc-examples",
        doc_string="Small CNN for the modelc demo; see examples/make_demo_model.py.",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    onnx.save(build(), out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
