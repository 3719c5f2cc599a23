"""`cpu-int8`: the `cpu` target with post-training int8 quantization in front of its pipeline.

`quantize` (calibrated from `modelc.compile(..., calibration=...)`) writes the network in QDQ
form; the cpu pipeline's `fold-qdq` then turns it into integer qconv / qmatmul + requantize, so
emit, build and load are the cpu target's own.
"""

from __future__ import annotations

from modelc.targets.cpu import CPU, CPU_PIPELINE
from modelc.targets.registry import Target, register_target

# Float clean-up (BatchNorm folded into convs, so the folded weights are the ones quantized),
# then quantize, then the whole cpu pipeline (fold-qdq first).
CPU_INT8_PIPELINE = "fold-constants,canonicalize,fold-batchnorm,quantize," + CPU_PIPELINE

CPU_INT8 = register_target(
    Target(
        name="cpu-int8",
        description="int8 C for the host CPU: post-training quantization (needs calibration "
        "data), integer conv / matmul with int32 accumulators and fixed-point requantization",
        pipeline=CPU_INT8_PIPELINE,
        emit=CPU.emit,
        build=CPU.build,
        load=CPU.load,
        capabilities=CPU.capabilities,
        tags={"needs_calibration": True},
    )
)
