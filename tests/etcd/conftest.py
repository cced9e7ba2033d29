"""The etcd tests run real Debian etcd members (etcd-server) on address blocks of their own."""

from __future__ import annotations

import shutil

if shutil.which("etcd") is None or shutil.which("etcdctl") is None:  # a missing etcd fails the run, never skips
    raise RuntimeError("etcd is not installed: run scripts/setup.sh (Debian packages etcd-server and etcd-client)")
