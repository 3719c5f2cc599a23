"""Op definitions. Importing this package registers every op; one module per family."""

from modelc.ir.ops import elementwise  # noqa: F401
