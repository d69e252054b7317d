"""The TensorRT tests' own fakes and fixtures (fake tensorrt 10.3 / 11.x, fake cuda-python, a
bundle with an int8-trt artifact), so that `edgevision engine` is checked against the same set."""

from tests.backends.tensorrt.conftest import (  # noqa: F401 - re-exported fixtures
    _isolated,
    cudart,
    gpu,
    make_trt,
    trt,
    trt_bundle,
)
