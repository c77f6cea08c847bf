"""HTTP Basic authentication of the API (SRS 5+'s `http_api { auth { } }`): a pure decision.

SRS asks it of every request whose path is under `/api/` (after answering a CORS preflight,
which carries no credentials); srv asks it of every request the API route answers, on every
listener that carries the API (HTTP or HTTPS). The exporter and the health checks stay open.

Invariants:
- the username and the password are both compared, each in constant time
  (`hmac.compare_digest`), so neither a wrong username nor a wrong password answers sooner;
- the reason a request is refused never contains what the client sent (a password typed in
  the username field would otherwise reach the log), nor the configured secret;
- the password may contain `:` (RFC 7617 splits at the first one; SRS refuses such passwords).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from srv.conf.model import ApiAuthConfig

__all__ = ["CHALLENGE", "refusal"]

# RFC 7617 requires a realm; SRS sends a bare `Basic`, which browsers also accept
CHALLENGE = b'Basic realm="srv", charset="UTF-8"'


def refusal(auth: ApiAuthConfig, header: bytes | None) -> str | None:
    """Why a request with this `Authorization` header is refused, or None if it may pass."""
    if not auth.enabled:
        return None
    if not header:
        return "no credentials"
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "not Basic credentials"
    try:
        plain = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "malformed Basic credentials"
    username, colon, password = plain.partition(b":")
    if not colon:
        return "malformed Basic credentials"
    user_ok = hmac.compare_digest(username, auth.username.encode())
    password_ok = hmac.compare_digest(password, auth.password.encode())
    if not (user_ok and password_ok):
        return "wrong username or password"
    return None
