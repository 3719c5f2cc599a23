"""modelc: a deep-learning compiler.

lib = modelc.compile("model.onnx", target="cpu")
y = lib(x)
"""

from modelc import tune
from modelc.api import compile, load
from modelc.errors import Error

__version__ = "0.1.0"
__all__ = ["Error", "__version__", "compile", "load", "tune"]
