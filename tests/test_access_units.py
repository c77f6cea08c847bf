"""The pure access decisions (srv.app.access): SRS's security order, signed-URL tokens and the
per-IP limiter, with a clock the test holds."""

from __future__ import annotations

import pytest

from srv.app.access import IpLimiter, make_token, plain_ip, security_check, token_check
from srv.conf.model import PerIpConfig, SecurityConfig, SignedUrlConfig

Rules = tuple[tuple[str, str], ...]


def sec(allow: Rules = (), deny: Rules = ()) -> SecurityConfig:
    return SecurityConfig(enabled=True, allow=allow, deny=deny)


@pytest.mark.parametrize("config, action, ip, allowed", [
    (SecurityConfig(enabled=False, deny=(("publish", "all"),)), "publish", "1.2.3.4", True),  # off: all pass
    (sec(), "play", "127.0.0.1", False),  # on without rules: SRS denies all
    (sec(deny=(("publish", "all"),)), "play", "1.2.3.4", True),  # only deny rules: others pass
    (sec(deny=(("publish", "all"),)), "publish", "1.2.3.4", False),
    (sec(allow=(("play", "127.0.0.1"), ("play", "10.0.0.0/8")), deny=(("publish", "all"),)),
     "play", "10.9.8.7", True),
    (sec(allow=(("play", "127.0.0.1"), ("play", "10.0.0.0/8")), deny=(("publish", "all"),)),
     "play", "11.0.0.1", False),
    (sec(allow=(("publish", "127.0.0.1"),)), "publish", "127.0.0.1", True),
    (sec(allow=(("publish", "127.0.0.1"),)), "play", "127.0.0.1", False),  # the surprise
    (sec(allow=(("play", "all"),), deny=(("play", "10.0.0.0/8"),)), "play", "10.1.1.1", False),  # deny first
    (sec(allow=(("play", "::/120"),)), "play", "::1", True),  # IPv6 CIDR
    (sec(allow=(("play", "::1"),)), "play", "::2", False),
    (sec(allow=(("play", "fd00::/8"),)), "play", "127.0.0.1", False),  # other family: no match
    (sec(allow=(("play", "127.0.0.0/8"),)), "play", "::ffff:127.0.0.9", True),  # IPv4-mapped
    (sec(allow=(("play", "127.0.0.1"),)), "play", "worker", False),  # not an address: no match
])
def test_security_follows_srs_order(config: SecurityConfig, action: str, ip: str, allowed: bool) -> None:
    assert (security_check(config, action, ip) is None) == allowed


def test_security_refusals_name_the_rule_or_the_count() -> None:
    r = security_check(sec(deny=(("play", "10.0.0.0/8"),)), "play", "10.0.0.1")
    assert r is not None and r.reason == "security: play from 10.0.0.1 denied by rule deny play 10.0.0.0/8"
    assert r.counter == "security" and r.failed_auth
    r = security_check(sec(allow=(("publish", "127.0.0.1"),)), "play", "127.0.0.1")
    assert r is not None and r.reason == "security: play from 127.0.0.1 not allowed by any of 1 allow rules"


def test_plain_ip_unmaps_ipv4_mapped_addresses_only() -> None:
    assert plain_ip("::ffff:127.0.0.2") == "127.0.0.2"
    assert plain_ip("::1") == "::1" and plain_ip("10.0.0.1") == "10.0.0.1"


KEYS = SignedUrlConfig(enabled=True, publish=True, play=True, keys=(("k1", "old-secret"), ("k2", "new-secret")))


def check(token: str | None, action: str = "publish", stream: str = "s", now: float = 1000.0) -> str | None:
    refusal = token_check(KEYS, action, "__defaultVhost__", "live", stream, token, now)
    return None if refusal is None else refusal.reason


def test_a_signed_url_token_is_checked_against_action_stream_expiry_and_key() -> None:
    good = make_token("k2", "new-secret", "publish", "__defaultVhost__", "live", "s", 2000)
    assert check(good) is None
    assert check(make_token("k1", "old-secret", "publish", "__defaultVhost__", "live", "s", 2000)) is None  # rotation
    assert check(good, now=2001) == "signed_url: token expired 1s ago"
    assert check(good, stream="other") == "signed_url: bad signature for publish live/other"
    assert check(good, action="play") == "signed_url: bad signature for play live/s"
    assert check(make_token("k2", "guessed", "publish", "__defaultVhost__", "live", "s", 2000)) == \
        "signed_url: bad signature for publish live/s"
    assert check(make_token("k3", "new-secret", "publish", "__defaultVhost__", "live", "s", 2000)) == \
        "signed_url: unknown key"
    assert check(None) == "signed_url: publish needs a token"
    for bad in ("k2", "k2.x.y", "k2.2000.", ".2000.abc", "k2.2000.\udcff\u00e9"):
        assert check(bad) in ("signed_url: malformed token", "signed_url: bad signature for publish live/s")


def test_signed_urls_apply_only_to_the_actions_switched_on() -> None:
    publish_only = SignedUrlConfig(enabled=True, publish=True, play=False, keys=(("k", "s"),))
    assert token_check(publish_only, "play", "v", "live", "s", None, 0) is None
    assert token_check(publish_only, "publish", "v", "live", "s", None, 0) is not None
    assert token_check(SignedUrlConfig(), "publish", "v", "live", "s", None, 0) is None


def test_limiter_caps_concurrent_connections_per_ip() -> None:
    cfg, lim = PerIpConfig(max_connections=2), IpLimiter()
    assert lim.admit(cfg, "10.0.0.1", 0) is None and lim.admit(cfg, "10.0.0.1", 0) is None
    refused = lim.admit(cfg, "10.0.0.1", 0)
    assert refused is not None and refused.counter == "ip_connections" and not refused.failed_auth
    assert lim.admit(cfg, "10.0.0.2", 0) is None  # another address has its own count
    lim.release("10.0.0.1")
    assert lim.admit(cfg, "10.0.0.1", 0) is None


def test_limiter_rate_is_a_token_bucket_with_a_burst() -> None:
    cfg, lim = PerIpConfig(connect_rate=1.0, connect_burst=3), IpLimiter()
    assert [lim.admit(cfg, "a", 0.0) is None for _ in range(4)] == [True, True, True, False]
    assert lim.admit(cfg, "a", 0.5) is not None
    assert lim.admit(cfg, "a", 1.0) is None  # one second refills one


def test_limiter_bans_after_n_failed_auths_within_the_window_for_ban_time() -> None:
    cfg, lim = PerIpConfig(ban_after=3, ban_window=10, ban_time=60), IpLimiter()
    assert not lim.failed_auth(cfg, "a", 0) and not lim.failed_auth(cfg, "a", 11)  # the first one is forgotten
    assert not lim.failed_auth(cfg, "a", 12)
    assert lim.failed_auth(cfg, "a", 13)  # 3 within 10 s: banned
    refused = lim.admit(cfg, "a", 20)
    assert refused is not None and refused.counter == "ip_banned"
    assert lim.admit(cfg, "b", 20) is None
    assert lim.admit(cfg, "a", 74) is None  # the ban is over


def test_limiter_takes_a_ban_another_worker_decided() -> None:
    cfg, lim = PerIpConfig(ban_after=3, ban_window=10, ban_time=60), IpLimiter()
    lim.ban(cfg, "a", 100, 30)
    refused = lim.admit(cfg, "a", 129)
    assert refused is not None and refused.counter == "ip_banned"
    assert lim.admit(cfg, "a", 131) is None  # the ban is over


def test_limiter_forgets_idle_addresses() -> None:
    cfg, lim = PerIpConfig(connect_rate=1.0, connect_burst=2), IpLimiter()
    for i in range(100):
        assert lim.admit(cfg, f"10.0.0.{i}", 0) is None
        lim.release(f"10.0.0.{i}")
    lim.prune(cfg, 10)
    assert lim.ips == {}
