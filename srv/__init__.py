"""srv: a config-file-driven, multi-process live media server (RTMP, HTTP-FLV).

The package is layered; imports go one way only (tests/test_layers.py enforces it):
rtmp -> media -> conf -> app -> net -> http -> worker/master.
"""

__version__ = "0.1.0"
SIGNATURE = "srv"

# the hot path compiled with mypyc when a build for these very sources exists (srv/accel.py);
# before any of its modules is imported
from srv import accel as _accel  # noqa: E402

_accel.install()
