"""TLS for a secured TiKV cluster: PD, every store's status port and Prometheus over HTTPS, with
the cluster's CA and a client certificate (what `pd-ctl --cacert --cert --key` uses)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator


class TLSOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ca: str | None = None  # PEM bundle of the CA that signed PD's, the stores' and Prometheus's certificates
    cert: str | None = None  # client certificate (PEM), for clusters that require one
    key: str | None = None  # its private key (PEM)

    @model_validator(mode="after")
    def _pair(self) -> TLSOptions:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key (tls.cert and tls.key go together)")
        return self


def client_context(tls: TLSOptions | None) -> ssl.SSLContext | None:
    """An SSL context that verifies servers against the CA (the system's when none is given) and
    presents the client certificate. Raises ValueError naming the file that cannot be used."""
    if tls is None or (tls.ca is None and tls.cert is None):
        return None
    for what, path in (("CA", tls.ca), ("client certificate", tls.cert), ("client key", tls.key)):
        if path is not None and not Path(path).expanduser().is_file():
            raise ValueError(f"TLS {what} file {path} does not exist")
    try:
        context = ssl.create_default_context(cafile=str(Path(tls.ca).expanduser()) if tls.ca else None)
        if tls.cert is not None and tls.key is not None:
            context.load_cert_chain(str(Path(tls.cert).expanduser()), str(Path(tls.key).expanduser()))
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"cannot use the TLS files ({tls.ca}, {tls.cert}, {tls.key}): {e}") from e
    return context
