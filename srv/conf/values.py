"""Argument shapes: each turns one directive argument (a string) into a typed value.

A converter raises ``ValueError`` whose text is the user-facing reason, e.g.
``invalid port "abc"``; the builder adds ``path:line:col:``.  Converters are plain functions
so the directive table can name them and the env layer can reuse them unchanged.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from srv.conf.model import Endpoint

Converter = Callable[[str], Any]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


def flag(arg: str) -> bool:
    """``on`` or ``off`` (SRS spelling), nothing else."""
    if arg == "on":
        return True
    if arg == "off":
        return False
    return _bad_flag(arg)


def _bad_flag(arg: str) -> bool:
    lowered = arg.lower()
    if lowered in ("on", "true", "yes", "1", "enable", "enabled"):
        raise ValueError(f'invalid value "{arg}" (expected on or off; did you mean "on"?)')
    if lowered in ("off", "false", "no", "0", "of", "disable", "disabled"):
        raise ValueError(f'invalid value "{arg}" (expected on or off; did you mean "off"?)')
    raise ValueError(f'invalid value "{arg}" (expected on or off)')


def integer(minimum: int | None = None, maximum: int | None = None, unit: str = "") -> Converter:
    """A whole number in ``[minimum, maximum]``; ``unit`` only shapes the message."""

    def convert(arg: str) -> int:
        try:
            value = int(arg, 10)
        except ValueError:
            raise ValueError(f'invalid {unit or "integer"} "{arg}" (expected a whole number)') from None
        _check_range(arg, value, minimum, maximum)
        return value

    return convert


_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def size(arg: str) -> int:
    """A byte count, nginx style: ``1048576``, ``512k``, ``64m``, ``1g`` (0 or more)."""
    unit = arg[-1:].lower() if arg[-1:].isalpha() else ""
    number = arg[: len(arg) - len(unit)]
    if unit not in _SIZE_UNITS or not number.isdigit():
        raise ValueError(f'invalid size "{arg}" (expected bytes, or a number with k, m or g, e.g. 64m)')
    return int(number) * _SIZE_UNITS[unit]


_KEEP_TIME_UNITS = {"": 1, "s": 1, "h": 3600, "d": 86400}


def keep_limit(arg: str) -> tuple[str, float]:
    """srv's ``dvr_keep``: an age (``3600``, ``3600s``, ``12h``, ``7d``) -> ("seconds", s), or a
    size nginx style (``512k``, ``64m``, ``10g``) -> ("bytes", n)."""
    unit = arg[-1:].lower() if arg[-1:].isalpha() else ""
    if unit in _KEEP_TIME_UNITS and arg[: len(arg) - len(unit)].isdigit():
        return "seconds", float(int(arg[: len(arg) - len(unit)]) * _KEEP_TIME_UNITS[unit])
    if unit in ("k", "m", "g"):
        return "bytes", float(size(arg))
    raise ValueError(f'invalid dvr_keep "{arg}" (expected an age: 3600, 12h, 7d; or a size: 500m, 10g)')


def seconds(minimum: float = 0.0, maximum: float | None = None) -> Converter:
    """A duration in seconds, fractions allowed (``30``, ``0.5``)."""

    def convert(arg: str) -> float:
        try:
            value = float(arg)
        except ValueError:
            raise ValueError(f'invalid duration "{arg}" (expected seconds, e.g. 30 or 0.5)') from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f'invalid duration "{arg}" (expected seconds, e.g. 30 or 0.5)')
        _check_range(arg, value, minimum, maximum)
        return value

    return convert


def _check_range(arg: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f'invalid value "{arg}" (expected {_num(minimum)} to {_num(maximum)})')
    if minimum is not None and value < minimum:
        raise ValueError(f'invalid value "{arg}" (expected a number >= {_num(minimum)})')
    if maximum is not None and value > maximum:
        raise ValueError(f'invalid value "{arg}" (expected a number <= {_num(maximum)})')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def milliseconds(minimum: int = 0, maximum: int | None = None) -> Converter:
    return integer(minimum, maximum, unit="milliseconds")


def string(arg: str) -> str:
    if not arg:
        raise ValueError("empty value")
    return arg


def choice(*choices: str) -> Converter:
    """One of ``choices``, exactly as spelled."""

    def convert(arg: str) -> str:
        if arg in choices:
            return arg
        expected = ", ".join(choices)
        raise ValueError(f'invalid value "{arg}" (expected one of: {expected})')

    return convert


def port(arg: str) -> int:
    if not arg.isdigit():
        raise ValueError(f'invalid port "{arg}"')
    value = int(arg)
    if not 1 <= value <= 65535:
        raise ValueError(f'invalid port "{arg}" (expected 1 to 65535)')
    return value


def endpoint(arg: str) -> Endpoint:
    """``[ip:]port``: ``1935``, ``127.0.0.1:1935``, ``[::1]:1935``; no ip means ``0.0.0.0``."""
    if arg.isdigit() or ":" not in arg:
        return Endpoint("0.0.0.0", port(arg))
    if arg.startswith("["):
        host, sep, rest = arg[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f'invalid listen address "{arg}" (expected [ipv6]:port)')
        _check_ip(host, arg)
        return Endpoint(host, port(rest[1:]))
    host, _, port_text = arg.rpartition(":")
    if ":" in host:
        raise ValueError(f'invalid listen address "{arg}" (write IPv6 as [addr]:port)')
    if host != "localhost":
        _check_ip(host, arg)
    return Endpoint(host, port(port_text))


PROXY_PROTOCOL = "proxy_protocol"


def listen_address(arg: str) -> Endpoint | str:
    """An ``endpoint``, or the word ``proxy_protocol`` marking the address before it (srv)."""
    return PROXY_PROTOCOL if arg == PROXY_PROTOCOL else endpoint(arg)


def listen_addresses(args: list[Any]) -> tuple[Endpoint, ...]:
    """``listen 1935 19350 proxy_protocol;``: each ``proxy_protocol`` marks the address just
    before it (nginx's order), here 19350 expects PROXY headers and 1935 does not."""
    out: list[Endpoint] = []
    for arg in args:
        if arg != PROXY_PROTOCOL:
            out.append(arg)
        elif not out or out[-1].proxy_protocol:
            raise ValueError('"proxy_protocol" must follow a listen address (listen 1935 proxy_protocol;)')
        else:
            out[-1] = Endpoint(out[-1].host, out[-1].port, proxy_protocol=True)
    if not out:
        raise ValueError("a listen address is missing")
    return tuple(out)


def one_listen_address(args: list[Any]) -> Endpoint:
    """``listen 1985 [proxy_protocol];``: one address, optionally marked."""
    found = listen_addresses(args)
    if len(found) > 1:
        raise ValueError(f"one listen address expected, got {len(found)}")
    return found[0]


def network(arg: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP address or a CIDR block: ``10.0.0.1``, ``10.0.0.0/8``, ``::1``, ``fd00::/8``."""
    try:
        return ipaddress.ip_network(arg)
    except ValueError as e:
        raise ValueError(f'invalid address or CIDR block "{arg}" ({e})') from None


def _check_ip(host: str, arg: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'invalid listen address "{arg}" ("{host}" is not an IP address)') from None


_RTMP_URL = re.compile(r"^rtmps?://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:?#\s\[\]]+)(:(?P<port>[^/?#]*))?(?P<path>/[^\s]*)?$")


def destination(arg: str) -> str:
    """A forward target: ``host[:port]`` (RTMP, same app/stream) or an ``rtmp://`` URL."""
    if "://" in arg:
        m = _RTMP_URL.match(arg)
        if m is None:
            raise ValueError(f'invalid destination "{arg}" (expected host[:port] or rtmp://host[:port]/app/stream)')
        if m.group("port") is not None:
            _destination_port(arg, m.group("port"))
        return arg
    host, sep, port_text = arg.rpartition(":")
    if not sep:
        host, port_text = arg, ""
    if host.startswith("[") and host.endswith("]"):
        _check_ip(host[1:-1], arg)
    elif not _HOSTNAME.match(host):
        raise ValueError(f'invalid destination "{arg}" (expected host[:port] or rtmp://host[:port]/app/stream)')
    if sep:
        _destination_port(arg, port_text)
    return arg


def origin(arg: str) -> str:
    """An edge's origin (SRS ``cluster { origin }``): ``host[:port]`` or ``[v6]:port``, port 1935 by default."""
    if "://" in arg:
        raise ValueError(f'invalid origin "{arg}" (expected host[:port], not a URL)')
    return destination(arg)


def _destination_port(arg: str, text: str) -> None:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f'invalid destination "{arg}" (bad port "{text}")')


_HTTP_URL = re.compile(r"^https?://[^/\s?#]+(/\S*)?$")


def http_url(arg: str) -> str:
    if not _HTTP_URL.match(arg):
        raise ValueError(f'invalid URL "{arg}" (expected http://host[:port]/path)')
    return arg


def flag_or_network(arg: str) -> str:
    """``on``, ``off`` or an IP network (``10.0.0.0/8``, ``fd00::/8``, a single address)."""
    if arg in ("on", "off"):
        return arg
    try:
        return str(ipaddress.ip_network(arg, strict=False))
    except ValueError:
        raise ValueError(f'invalid value "{arg}" (expected on, off or an IP network such as 10.0.0.0/8)') from None


def stream_pattern(arg: str) -> str:
    """An fnmatch pattern on ``app/stream`` (``*``, ``live/*``, ``live/game_*``)."""
    if not arg or any(c.isspace() for c in arg):
        raise ValueError(f'invalid stream pattern "{arg}" (expected app/stream, wildcards allowed)')
    return arg


def vhost_name(arg: str) -> str:
    if not arg:
        raise ValueError("a vhost needs a name")
    return arg


def security_arg(arg: str) -> str:
    """A word of an ``allow``/``deny`` rule: ``publish``, ``play``, ``all``, an IP or a CIDR
    (IPv4 or IPv6; srv adds IPv6 and normalises: ``10.1.2.3/8`` -> ``10.0.0.0/8``)."""
    if arg in ("publish", "play", "all"):
        return arg
    try:
        if "/" in arg:
            return str(ipaddress.ip_network(arg, strict=False))
        return str(ipaddress.ip_address(arg))
    except ValueError:
        raise ValueError(f'invalid rule word "{arg}" (expected publish, play, all, an IP or a CIDR)') from None


_KEY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def key_name(arg: str) -> str:
    """The name of a signing key: letters, digits, ``_`` and ``-`` (it travels in the token)."""
    if not _KEY_NAME.match(arg):
        raise ValueError(f'invalid key name "{arg}" (expected 1 to 64 letters, digits, _ or -)')
    return arg
