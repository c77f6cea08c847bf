"""Access decisions: who may publish or play, as pure functions of the config and the request.

The net layer asks at publish and play (RTMP) and at an HTTP-FLV play; the answer is None
(go on) or a `Refusal`, which the net layer turns into the client's answer (an RTMP status,
an HTTP 403) through one refusal path. Nothing here does I/O or reads a clock: the caller
passes `now`.

- `security_check`: SRS's ``security { }``, with SRS's evaluation order (SRS 4+
  ``SrsSecurity::do_check``): enabled with no rule denies everyone; then a ``deny`` rule of the
  client's action that matches denies; then an ``allow`` rule of the action that matches
  allows; then, **if any allow rule exists, of either action**, the client is denied. That
  last step is SRS's surprise, kept on purpose: ``allow publish 127.0.0.1;`` alone also denies
  every player (add ``allow play all;``). With only deny rules, whoever is not denied passes.
  Targets are ``all``, an IP or a CIDR; srv adds IPv6 (an IPv4-mapped client address such as
  ``::ffff:10.1.2.3`` is matched as the IPv4 address).
- `token_check`: srv's signed URLs. ``token=<key>.<expires>.<signature>`` where the signature
  is base64url (no padding) of HMAC-SHA256(secret, "<action>\\n<vhost>\\n<app>\\n<stream>\\n
  <expires>"), ``<vhost>`` the name of the vhost block that serves the request and
  ``<expires>`` a Unix time. Compared in constant time; every key of the block is accepted
  (two while rotating). `make_token` mints one.
- `IpLimiter`: per-IP limits (concurrent connections, a token bucket of new connections,
  a ban after repeated refusals). It keeps state, so it is an object, still without I/O or a
  clock of its own; its tables are pruned so that many addresses cost bounded memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from srv.conf.model import PerIpConfig, SecurityConfig, SignedUrlConfig, VhostConfig

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TOKEN_PARAM: Final = "token"
MAX_TRACKED_IPS: Final = 100_000  # per worker; beyond it, idle entries are dropped first


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a client is refused, in words safe to log and to tell the client (never a secret).

    `counter` labels ``srs_connections_rejected{reason=...}``; `code` overrides the RTMP status
    code the client gets (None: the refusal path picks the usual one for the stage);
    `failed_auth` counts toward ``per_ip { ban_after }``.
    """

    reason: str
    counter: str
    code: str | None = None
    failed_auth: bool = True


# ---- SRS security { } ----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def client_address(ip: str) -> IpAddress | None:
    """The client's address, an IPv4-mapped IPv6 one as IPv4; None if `ip` is not an address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@lru_cache(maxsize=1024)
def _network(target: str) -> IpNetwork:
    return ipaddress.ip_network(target, strict=False)


def plain_ip(ip: str) -> str:
    """`ip` as rules, limits and logs see it: an IPv4-mapped address (a dual-stack listener's
    ``::ffff:127.0.0.1``) as the IPv4 one; anything else unchanged."""
    addr = client_address(ip) if ip.startswith("::ffff:") else None
    return str(addr) if addr is not None else ip


def _matches(target: str, ip: str) -> bool:
    if target == "all":
        return True
    addr = client_address(ip)
    return addr is not None and addr in _network(target)


def security_check(sec: SecurityConfig, action: str, ip: str) -> Refusal | None:
    """SRS's decision for a client at `ip` that wants to `action` ("publish" or "play")."""
    if not sec.enabled:
        return None
    if not sec.allow and not sec.deny:
        return Refusal(f"security: {ip} denied (security enabled without rules denies all)", "security")
    for rule_action, target in sec.deny:
        if rule_action == action and _matches(target, ip):
            return Refusal(f"security: {action} from {ip} denied by rule deny {action} {target}", "security")
    for rule_action, target in sec.allow:
        if rule_action == action and _matches(target, ip):
            return None
    if sec.allow:  # SRS: any allow rule, of either action, makes everyone else denied
        return Refusal(f"security: {action} from {ip} not allowed by any of {len(sec.allow)} allow rules",
                       "security")
    return None


# ---- signed URLs ---------------------------------------------------------------------------


def signature(secret: str, action: str, vhost: str, app: str, stream: str, expires: int) -> str:
    message = f"{action}\n{vhost}\n{app}\n{stream}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_token(key: str, secret: str, action: str, vhost: str, app: str, stream: str, expires: int) -> str:
    """The value of ``?token=`` that lets `action` on vhost/app/stream until `expires` (Unix time)."""
    return f"{key}.{expires}.{signature(secret, action, vhost, app, stream, expires)}"


def token_check(cfg: SignedUrlConfig, action: str, vhost: str, app: str, stream: str,
                token: str | None, now: float) -> Refusal | None:
    """None when `token` signs `action` on vhost/app/stream with a configured key and has not
    expired (or no token is required); else why not. The reason never contains the token."""
    if not cfg.enabled or not (cfg.publish if action == "publish" else cfg.play):
        return None
    if not token:
        return Refusal(f"signed_url: {action} needs a token", "signed_url")
    key, _, rest = token.partition(".")
    expires_text, _, sig = rest.partition(".")
    if not key or not expires_text.isdigit() or len(expires_text) > 12 or not sig:
        return Refusal("signed_url: malformed token", "signed_url")
    secrets = [secret for name, secret in cfg.keys if name == key]
    if not secrets:
        return Refusal("signed_url: unknown key", "signed_url")
    expires = int(expires_text)
    expected = signature(secrets[0], action, vhost, app, stream, expires)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogateescape")):
        return Refusal(f"signed_url: bad signature for {action} {app}/{stream}", "signed_url")
    if expires < now:
        return Refusal(f"signed_url: token expired {int(now) - expires}s ago", "signed_url")
    return None


def check_access(vhost: VhostConfig, action: str, ip: str, app: str, stream: str,
                 params: dict[str, str], now: float) -> Refusal | None:
    """Every local rule for one publish or play: SRS's security, then srv's signed URL."""
    refusal = security_check(vhost.security, action, ip)
    if refusal is None:
        refusal = token_check(vhost.signed_url, action, vhost.name, app, stream, params.get(TOKEN_PARAM), now)
    return refusal


# ---- per-IP limits -------------------------------------------------------------------------


@dataclass(slots=True)
class _IpState:
    connections: int = 0
    tokens: float = 0.0
    stamp: float = 0.0
    failures: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0


class IpLimiter:
    """One worker's per-IP figures; `cfg` is passed at each call, so a reload applies at once.

    `admit` at accept (then `release` when that connection ends), `failed_auth` at each
    refusal that counts toward a ban, `ban` when the master says another worker banned an IP
    (a ban is the server's: the worker that decides it tells the master, which tells them all).
    """

    def __init__(self) -> None:
        self.ips: dict[str, _IpState] = {}

    def _state(self, cfg: PerIpConfig, ip: str, now: float) -> _IpState:
        st = self.ips.get(ip)
        if st is None:
            if len(self.ips) >= MAX_TRACKED_IPS:
                self.prune(cfg, now)
            st = self.ips[ip] = _IpState(tokens=float(cfg.connect_burst), stamp=now)
        return st

    def admit(self, cfg: PerIpConfig, ip: str, now: float) -> Refusal | None:
        """Whether a new connection from `ip` may stay; counts it when it may."""
        if not (cfg.max_connections or cfg.connect_rate or cfg.ban_after):
            return None
        st = self._state(cfg, ip, now)
        if st.banned_until > now:
            return Refusal(f"{ip} is banned for {st.banned_until - now:.0f}s more", "ip_banned", failed_auth=False)
        if cfg.connect_rate:
            st.tokens = min(float(cfg.connect_burst), st.tokens + (now - st.stamp) * cfg.connect_rate)
            st.stamp = now
            if st.tokens < 1.0:
                return Refusal(f"more than {cfg.connect_rate:g} new connections/s (burst {cfg.connect_burst}) "
                               f"from {ip}", "ip_rate", failed_auth=False)
            st.tokens -= 1.0
        if cfg.max_connections and st.connections >= cfg.max_connections:
            return Refusal(f"{ip} already has {st.connections} connections (per_ip max_connections)",
                           "ip_connections", failed_auth=False)
        st.connections += 1
        return None

    def banned(self, ip: str, now: float) -> Refusal | None:
        """`ip`'s ban, when it has one: for requests that hold no connection (HLS viewers)."""
        st = self.ips.get(ip)
        if st is None or st.banned_until <= now:
            return None
        return Refusal(f"{ip} is banned for {st.banned_until - now:.0f}s more", "ip_banned", failed_auth=False)

    def release(self, ip: str) -> None:
        st = self.ips.get(ip)
        if st is not None and st.connections > 0:
            st.connections -= 1

    def failed_auth(self, cfg: PerIpConfig, ip: str, now: float) -> bool:
        """Count a refused auth from `ip`; True when it bans `ip` (for `cfg.ban_time`)."""
        if not cfg.ban_after:
            return False
        st = self._state(cfg, ip, now)
        st.failures.append(now)
        while st.failures and st.failures[0] <= now - cfg.ban_window:
            st.failures.popleft()
        if len(st.failures) >= cfg.ban_after and st.banned_until <= now:
            st.banned_until = now + cfg.ban_time
            st.failures.clear()
            return True
        return False

    def ban(self, cfg: PerIpConfig, ip: str, now: float, seconds: float) -> None:
        """Refuse `ip` for `seconds` from `now` (a ban any worker decided, told by the master)."""
        st = self._state(cfg, ip, now)
        st.banned_until = max(st.banned_until, now + seconds)

    def prune(self, cfg: PerIpConfig, now: float) -> None:
        """Forget addresses that hold nothing: no connection, a full bucket, no recent failure, no ban."""
        for ip, st in list(self.ips.items()):
            full = cfg.connect_rate == 0 or st.tokens + (now - st.stamp) * cfg.connect_rate >= cfg.connect_burst
            recent = bool(st.failures) and st.failures[-1] > now - cfg.ban_window
            if st.connections == 0 and full and not recent and st.banned_until <= now:
                del self.ips[ip]
