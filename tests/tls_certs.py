"""A throwaway certificate authority for TLS tests: a CA, a server certificate for 127.0.0.1 and a
client certificate, made with the `openssl` command line (Debian package openssl)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a CA that signed nothing here: trusting only it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(name: str, d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def _signed(name: str, ca: str, d: Path, extensions: str) -> None:
    (d / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)


def make_certs(d: Path) -> Certs:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed: run scripts/setup.sh (Debian package openssl)")
    d.mkdir(parents=True, exist_ok=True)
    _ca("test-ca", d)
    _ca("other-ca", d)
    _signed("server", "test-ca", d, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _signed("client", "test-ca", d, "extendedKeyUsage=clientAuth\n")
    return Certs(str(d / "test-ca.crt"), str(d / "server.crt"), str(d / "server.key"), str(d / "client.crt"),
                 str(d / "client.key"), str(d / "other-ca.crt"))
