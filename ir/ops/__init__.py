"""Op definitions. Importing this package registers every op; one module per family."""

from modelc.ir.ops import (  # noqa: F401
    elementwise,
    linalg,
    nn,
    pool,
    reduce,
    tensor,
    tensor_concat,
    tensor_gather,
    tensor_pad,
)
