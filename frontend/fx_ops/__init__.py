"""Converters from ATen ops (torch.export graphs) to graph-IR ops, one per overload, by family.

Importing this package registers every converter with `registry`:

- elementwise: math, activations, arithmetic with torch's type promotion, comparisons, where
- nn: convolution, linear / matmul family, softmax, attention, embedding
- norm: batch, layer, group and instance normalization
- pool: max / avg / adaptive pooling, upsampling
- tensor: views and reshapes, permutes, concat / split, slicing and indexing, casts, copies
- reduce: mean, sum, amax / amin, argmax / argmin

`trace` turns a module into the exported, decomposed program the converters read.
"""

from modelc.frontend.fx_ops import (  # noqa: F401
    elementwise,
    nn,
    norm,
    pool,
    reduce,
    tensor,
)
