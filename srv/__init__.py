"""srv: a config-file-driven, multi-process live media server (RTMP, HTTP-FLV).

The package is layered; imports go one way only (tests/test_layers.py enforces it):
rtmp -> media -> conf -> app -> net -> http -> worker/master.
"""

__version__ = "0.1.0"
SIGNATURE = "srv"
