"""ONNX op converters, one small function per op (and per op version where semantics changed).

Importing this package registers every converter; `registry.lookup` finds the one for an op in a
model of a given opset. Families:

- elementwise: math, arithmetic, comparison, logic, Where, Clip, Cast
- activation: activations with attributes, and compositions (Selu, PRelu, Mish, ...)
- nn: Conv, Gemm, MatMul, normalizations, LRN, Softmax, Dropout
- pool: MaxPool, AveragePool, global pools
- tensor: Reshape, Flatten, Squeeze/Unsqueeze, Transpose, Expand, Tile, depth <-> space
- slicing: Slice, Split, Concat, Pad, Gather
- shape: Shape, Size, Constant, ConstantOfShape, Range (all constants at import)
- reduce: Reduce*, ArgMax/ArgMin
- resize: Resize / Upsample (nearest mode)
"""

from modelc.frontend.onnx_ops import (  # noqa: F401
    activation,
    elementwise,
    nn,
    pool,
    reduce,
    resize,
    shape,
    slicing,
    tensor,
)
