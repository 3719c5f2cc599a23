"""ONNX op converters, one small function per op (and per op version where semantics changed).

Importing this package registers every converter; `registry.lookup` finds the one for an op in a
model of a given opset. Families:

- elementwise: math, arithmetic, comparison, logic, Where, Clip, Cast
- activation: activations with attributes, and compositions (Selu, PRelu, Mish, ...)
- nn: Conv, Gemm, MatMul, normalizations, LRN, Softmax, Dropout
- conv_transpose: ConvTranspose (auto_pad / output_shape resolved to pads)
- einsum: Einsum (as transpose / reshape / matmul / mul / reduce_sum)
- pool: MaxPool, AveragePool, global pools
- quant: QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul, MatMulInteger,
  ConvInteger
- tensor: Reshape, Flatten, Squeeze/Unsqueeze, Transpose, Expand, Tile, depth <-> space
- slicing: Slice, Split, Concat, Pad, Gather
- shape: Shape, Size, Constant, ConstantOfShape, Range (all constants at import)
- reduce: Reduce*, ArgMax/ArgMin
- resize: Resize / Upsample (nearest as gathers, linear / cubic as the resize op)
- topk: TopK
- arith: Mod, Sign, IsNaN, IsInf
- indexing: Trilu, CumSum, GatherElements, ScatterND
"""

from modelc.frontend.onnx_ops import (  # noqa: F401
    activation,
    arith,
    conv_transpose,
    einsum,
    elementwise,
    indexing,
    nn,
    pool,
    quant,
    reduce,
    resize,
    shape,
    slicing,
    tensor,
    topk,
)
