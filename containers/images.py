"""The images the labs, the compose files and the shell sandbox run, built here with no registry.

    debian       `debootstrap --variant=minbase bookworm` from the machine's own Debian mirror, then
                 `docker import`
    redis        Debian's redis-server on it
    etcd         Debian's etcd-server and etcd-client on it
    prometheus   Debian's prometheus on it
    ratelimiter  python3 on it, and the project's wheel (`pip wheel .`) installed in /opt/operator-tui
                 with its dependencies, downloaded from PyPI at build time
    shell        the agent's diagnostic shell: curl, procps, iproute2, jq, dnsutils

Each is tagged `operator-tui/<name>:<version>` and labelled with its name and a hash of what it was
built from (`org.operator-tui.inputs`): an image whose hash matches is not built again, so a second
`build` rebuilds nothing. Layered images are built with host networking (the engine has no bridge);
only apt and pip traffic to their registries leaves the machine, as on the host.

    python -m containers.images build [NAME ...] [--force] [--json]
    python -m containers.images list [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers.engine import LABEL, PROJECT_ROOT, EngineError, connect

SUITE = "bookworm"
PYTHON_TAG = "3.11.2"  # bookworm's python3, exactly: environment markers compare full versions
PACKAGES = ("operator_tui", "subjects", "containers", "screens", "widgets", "scenarios", "eval")  # the wheel's contents
LABEL_IMAGE = f"{LABEL}.image"
LABEL_INPUTS = f"{LABEL}.inputs"
APT_INSTALL = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
               "{packages} >/dev/null && rm -rf /var/lib/apt/lists/*")


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class Image:
    name: str
    version: str
    packages: tuple[str, ...] = ()  # Debian packages on the base
    extra: str = ""  # Dockerfile lines after the packages
    wheels: bool = False  # the project's wheels in the build context (ratelimiter)

    @property
    def tag(self) -> str:
        return f"operator-tui/{self.name}:{self.version}"


BASE = Image("debian", SUITE)
IMAGES: dict[str, Image] = {i.name: i for i in (
    BASE,
    Image("redis", "7.0", ("redis-server", "redis-tools"), 'CMD ["redis-server", "--bind", "127.0.0.1"]'),
    Image("etcd", "3.4", ("etcd-server", "etcd-client"), 'CMD ["etcd"]'),
    Image("prometheus", "2.42", ("prometheus",), 'ENTRYPOINT ["prometheus"]'),
    Image("ratelimiter", "0.1.0", ("python3", "python3-venv"), wheels=True, extra="\n".join((
        "COPY wheels /tmp/wheels",
        "RUN python3 -m venv /opt/operator-tui && /opt/operator-tui/bin/pip install -q --no-index "
        "--find-links /tmp/wheels operator-tui && rm -rf /tmp/wheels /root/.cache",
        "ENV PATH=/opt/operator-tui/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONUNBUFFERED=1",
        'CMD ["python", "-m", "subjects.ratelimiter.service", "--help"]',
    ))),
    Image("shell", "1", ("curl", "procps", "iproute2", "jq", "dnsutils", "ca-certificates", "netbase"),
          'CMD ["/bin/sh"]'),
)}


def mirror() -> str:
    """The Debian mirror apt uses on this machine (never a name written into the project)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise BuildError("no Debian mirror found in /etc/apt/sources.list(.d): debootstrap needs one")


def _project_hash() -> str:
    """What the ratelimiter image holds: pyproject.toml and every file of the wheel's packages."""
    h = hashlib.sha256((PROJECT_ROOT / "pyproject.toml").read_bytes())
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(str(path.relative_to(PROJECT_ROOT)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def dockerfile(image: Image) -> str:
    lines = [f"FROM {BASE.tag}"]
    if image.packages:
        lines.append("RUN " + APT_INSTALL.format(packages=" ".join(image.packages)))
    if image.extra:
        lines.append(image.extra)
    lines.append(f'LABEL {LABEL_IMAGE}="{image.name}"')
    return "\n".join(lines) + "\n"


def inputs(image: Image, base_id: str | None = None) -> str:
    """The hash that names what an image is built from (layered images include their base's id)."""
    h = hashlib.sha256(f"{image.tag}\n".encode())
    if image is BASE:
        h.update(f"debootstrap --variant=minbase {SUITE}".encode())
    else:
        h.update(dockerfile(image).encode())
        h.update((base_id or "").encode())
        if image.wheels:
            h.update(_project_hash().encode())
    return h.hexdigest()[:24]


def _existing(client: Any, tag: str) -> Any | None:
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def status(client: Any) -> list[dict[str, Any]]:
    """Each image: tag, whether present, whether current (its inputs hash matches)."""
    out = []
    base = _existing(client, BASE.tag)
    for image in IMAGES.values():
        found = _existing(client, image.tag)
        want = inputs(image, base.id if base is not None else None)
        have = (found.labels or {}).get(LABEL_INPUTS) if found is not None else None
        out.append({"name": image.name, "tag": image.tag, "present": found is not None,
                    "current": have == want, "id": found.short_id if found is not None else None})
    return out


def stale(client: Any, names: list[str] | None = None) -> list[str]:
    names = names or list(IMAGES)
    return [s["name"] for s in status(client) if s["name"] in names and not s["current"]]


def _run(argv: list[str], what: str, timeout_s: float) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:])
        raise BuildError(f"{what} failed ({done.returncode}): {tail}")


def _build_base(client: Any, work: Path, want: str) -> None:
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (Debian: apt-get install debootstrap; scripts/setup.sh does it)")
    rootfs = work / "rootfs"
    _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror()], "debootstrap", 1800)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / cache).glob("*"):
            if path.is_file():
                path.unlink()
    tarball = work / "rootfs.tar"
    _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], "tar", 600)
    shutil.rmtree(rootfs, ignore_errors=True)
    repository, tag = BASE.tag.split(":")
    changes = ['CMD ["/bin/bash"]', f'LABEL {LABEL_IMAGE}="{BASE.name}" {LABEL_INPUTS}="{want}"']
    client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)


def _wheels(target: Path) -> None:
    """The project's wheel plus its dependencies' wheels for bookworm's CPython, from PyPI.

    pip evaluates environment markers against the interpreter running it, not the target: a
    dependency needed only below the host's patch level (`python_full_version < "3.11.3"`) would be
    missed, so the markers are evaluated again for the image's Python until nothing is missing."""
    pip = [sys.executable, "-m", "pip", "-q"]
    platform = ["--only-binary=:all:", "--python-version", PYTHON_TAG, "--implementation", "cp",
                "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64"]
    _run([*pip, "wheel", "--no-deps", "-w", str(target), str(PROJECT_ROOT)], "pip wheel .", 600)
    wheel = next(target.glob("operator_tui-*.whl"))
    _run([*pip, "download", "-d", str(target), *platform, str(wheel)], "pip download (dependencies)", 900)
    for _ in range(10):
        missing = _unmet(target)
        if not missing:
            return
        _run([*pip, "download", "-d", str(target), *platform, *missing], "pip download (dependencies)", 900)
    raise BuildError(f"dependencies still missing for Python {PYTHON_TAG}: {', '.join(_unmet(target))}")


def _unmet(folder: Path) -> list[str]:
    """Requirements of the wheels in `folder`, under the image's Python, that no wheel there provides."""
    import zipfile
    from email.parser import Parser

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    env = {**default_environment(), "python_version": PYTHON_TAG.rsplit(".", 1)[0],
           "python_full_version": PYTHON_TAG, "extra": ""}
    have = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in folder.glob("*.whl")}
    unmet: set[str] = set()
    for wheel in folder.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            headers = Parser().parsestr(z.read(meta).decode("utf-8", "replace"), headersonly=True)
        for line in headers.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in have:
                unmet.add(str(req).split(";")[0].strip())
    return sorted(unmet)


def _build_layered(client: Any, image: Image, work: Path, want: str) -> None:
    import docker

    (work / "Dockerfile").write_text(dockerfile(image))
    if image.wheels:
        _wheels(work / "wheels")
    try:
        client.images.build(path=str(work), tag=image.tag, rm=True, forcerm=True, network_mode="host",
                            labels={LABEL_IMAGE: image.name, LABEL_INPUTS: want})
    except docker.errors.BuildError as e:
        lines = [str(chunk.get("stream") or chunk.get("error") or "").strip() for chunk in e.build_log]
        tail = " | ".join(line for line in lines if line)[-500:]
        raise BuildError(f"{image.tag}: {e.msg}: {tail}") from e


def build(client: Any, names: list[str] | None = None, *, force: bool = False,
          progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Build the named images (default: all) that are missing or stale; the base first when needed."""
    unknown = [n for n in names or [] if n not in IMAGES]
    if unknown:
        raise BuildError(f"unknown image {', '.join(unknown)}; images: {', '.join(IMAGES)}")
    wanted = names or list(IMAGES)
    order = [n for n in IMAGES if n in wanted or (n == BASE.name and wanted)]
    results: list[dict[str, Any]] = []
    try:
        _build_each(client, order, force, progress, results)
    finally:
        client.images.prune(filters={"dangling": True})  # replaced tags and failed builds leave layers behind
    return results


def _build_each(client: Any, order: list[str], force: bool, progress: Callable[[str], None],
                results: list[dict[str, Any]]) -> None:
    for i, name in enumerate(order, 1):
        image = IMAGES[name]
        base = _existing(client, BASE.tag)
        want = inputs(image, base.id if base is not None else None)
        found = _existing(client, image.tag)
        if not force and found is not None and (found.labels or {}).get(LABEL_INPUTS) == want:
            results.append({"name": name, "tag": image.tag, "outcome": "cached", "seconds": 0.0})
            progress(f"[{i}/{len(order)}] {image.tag}: up to date")
            continue
        progress(f"[{i}/{len(order)}] {image.tag}: building" + (" (debootstrap, a minute or more)"
                                                                 if image is BASE else ""))
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"operator-tui-image-{name}-", dir="/var/tmp") as work:
            if image is BASE:
                _build_base(client, Path(work), want)
            else:
                _build_layered(client, image, Path(work), want)
        seconds = round(time.monotonic() - t0, 1)
        results.append({"name": name, "tag": image.tag, "outcome": "built", "seconds": seconds})
        progress(f"[{i}/{len(order)}] {image.tag}: built in {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m containers.images",
                                     description="Build or list the project's Docker images (local engine or "
                                                 "DOCKER_HOST).")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build missing or stale images (a second run rebuilds nothing)")
    b.add_argument("names", nargs="*", metavar="NAME", help=f"images to build (default: all: {', '.join(IMAGES)})")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    b.add_argument("--json", action="store_true")
    s = sub.add_parser("list", help="which images are present and current")
    s.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        client = connect()
        if args.command == "build":
            out: Any = build(client, args.names, force=args.force,
                             progress=(lambda line: print(line, file=sys.stderr)) if args.json else print)
        else:
            out = status(client)
            if not args.json:
                for s in out:
                    state = "current" if s["current"] else ("stale" if s["present"] else "missing")
                    print(f"{s['tag']:<32} {state:<8} {s['id'] or ''}")
    except (EngineError, BuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
