"""Test certificates made with the openssl command line: one CA, server certificates it signs.

`Authority(dir).issue(name, serial)` writes `<name>.crt` and `<name>.key` for 127.0.0.1 and
localhost, signed by the CA in `ca.crt`, so clients can verify (`ssl.create_default_context(cafile=)`)
and tests can tell two certificates apart by their serial number.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Authority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=srv test CA",
                 "-keyout", "ca.key", "-out", "ca.crt", cwd=self.dir)

    def issue(self, name: str, serial: int, cn: str = "localhost") -> tuple[Path, Path]:
        """`(cert, key)` for `cn`, 127.0.0.1 and localhost, with this serial number."""
        ext = self.dir / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
                 str(serial), "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=self.dir)
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def peer_certificate(port: int, ca: Path, host: str = "127.0.0.1") -> dict[str, object]:
    """The certificate a new TLS handshake with `host:port` gets, checked against `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
    assert cert is not None
    return cert
