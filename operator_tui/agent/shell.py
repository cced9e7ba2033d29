"""`run_shell`: diagnostic commands in a bubblewrap sandbox, under an allow/deny policy.

The sandbox (Debian `bubblewrap`): the host's root bound read-only, a private /tmp, fresh /dev and
/proc, its own pid/ipc/uts namespaces, no capabilities (root inside could otherwise simply remount
/ read-write), no environment inherited (the operator's API key must not leak into it), the
operator's home and data directories and /run (service sockets: systemd, docker) hidden behind
empty tmpfs. The network is shared on purpose, so that read-only diagnostics such as
`curl -s http://127.0.0.1:2379/pd/api/v1/stores` work; that is also why commands are classified.

The policy sorts a command into one of three kinds:
- read_only: every part of it (pipeline stages, `;`, `&&`, `||`) is a command from
  READ_ONLY_COMMANDS whose arguments pass that command's check, with no output redirection other
  than to /dev/null and no command substitution. The diagnoser runs these directly.
- denied: it names a command from DENIED_COMMANDS anywhere a command can start. Never run.
  This is a guard against obvious mistakes, not the security boundary: that is the sandbox plus
  the approval of everything not known to be read-only.
- needs_approval: everything else. It becomes a `run_shell` action (risk high, not idempotent)
  that goes through the engine, so the approval policy applies, and runs in the same sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from operator_tui.paths import data_dir
from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionOutcome,
    ActionParams,
    Observation,
    RiskTier,
)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_OUTPUT = 8 * 1024  # bytes kept of stdout and of stderr each
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TRUSTED_DIRS = ("/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin")


class SandboxUnavailable(RuntimeError):
    """bwrap is not installed (or not executable), or the docker sandbox has no engine or image:
    nothing can run sandboxed."""


class ShellResult(BaseModel):
    exit_code: int | None  # None: killed before it exited (timeout)
    stdout: str
    stderr: str
    truncated: bool  # output beyond max_output was dropped
    timed_out: bool
    duration_ms: float

    def summary(self) -> str:
        if self.timed_out:
            state = "killed after the timeout"
        else:
            state = f"exit {self.exit_code}"
        return (f"{state} in {self.duration_ms:.0f} ms, {len(self.stdout)} chars of stdout"
                + (" (output truncated)" if self.truncated else ""))


# -- the sandbox --------------------------------------------------------------------------------


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable("bwrap is not installed: install the Debian package bubblewrap to use run_shell")
    return path


def default_hidden() -> list[str]:
    """Directories that hold the operator's own secrets and state: empty inside the sandbox."""
    out = ["/root", "/home", str(Path.home()), str(data_dir())]
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    out.append(str(Path(config) / "operator-tui"))
    return out


def bwrap_argv(command: str, bwrap: str, hidden: Sequence[str] = ()) -> list[str]:
    argv = [
        bwrap,
        "--ro-bind", "/", "/",
        "--tmpfs", "/tmp",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/run",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
        "--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
    ]
    seen: set[str] = set()
    for raw in hidden:
        path = os.path.realpath(raw)
        # Only existing directories outside what is already private: bwrap cannot create a mount
        # point on the read-only root, and /tmp, /run are fresh tmpfs anyway.
        if (path in seen or path == "/" or not os.path.isdir(path)
                or any(path == p or path.startswith(p + "/") for p in ("/tmp", "/run", "/proc", "/dev"))):
            continue
        seen.add(path)
        argv += ["--tmpfs", path]
    argv += ["--chdir", "/tmp", "/bin/sh", "-c", command]
    return argv


async def _read_capped(stream: asyncio.StreamReader, limit: int, sink: bytearray, flags: dict[str, bool]) -> None:
    # Keep reading past the cap (and drop it) so the command never blocks on a full pipe.
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        room = limit - len(sink)
        if room > 0:
            sink += chunk[:room]
        if len(chunk) > max(room, 0):
            flags["truncated"] = True


async def run_sandboxed(command: str, timeout_s: float = DEFAULT_TIMEOUT_S, max_output: int = DEFAULT_MAX_OUTPUT,
                        *, hidden: Sequence[str] | None = None, bwrap: str | None = None) -> ShellResult:
    """Run `command` with /bin/sh inside the sandbox. On timeout the whole process group is
    killed (and with it the sandbox: --die-with-parent tears down its pid namespace)."""
    binary = bwrap or find_bwrap()
    argv = bwrap_argv(command, binary, default_hidden() if hidden is None else hidden)
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    out, err = bytearray(), bytearray()
    flags = {"truncated": False}
    assert proc.stdout is not None and proc.stderr is not None
    readers = [asyncio.create_task(_read_capped(proc.stdout, max_output, out, flags)),
               asyncio.create_task(_read_capped(proc.stderr, max_output, err, flags))]
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
            await proc.wait()
        # Output still buffered after exit is read; a descendant that kept the pipe open is gone
        # with the sandbox, so this wait is short.
        await asyncio.wait(readers, timeout=5.0)
    finally:
        if proc.returncode is None:  # cancelled while waiting: leave nothing running
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return ShellResult(
        exit_code=None if timed_out else proc.returncode,
        stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
        truncated=flags["truncated"], timed_out=timed_out,
        duration_ms=round((time.monotonic() - t0) * 1000, 1),
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# -- the policy ---------------------------------------------------------------------------------

ArgCheck = Callable[[list[str]], str | None]  # arguments -> why they are not read-only, or None


def _no_flags(*bad: str) -> ArgCheck:
    """Refuse the listed options (exact, `--opt=value` and, for short ones, clustered `-xo`)."""
    longs = {b for b in bad if b.startswith("--")}
    shorts = {b[1] for b in bad if len(b) == 2 and b[0] == "-"}
    words = {b for b in bad if not b.startswith("-")}

    def check(args: list[str]) -> str | None:
        for a in args:
            if a in words or a.split("=", 1)[0] in longs:
                return f"{a} can change state"
            if a.startswith("-") and not a.startswith("--") and shorts & set(a[1:]):
                return f"{a} can change state"
        return None
    return check


def _find_check(args: list[str]) -> str | None:
    for a in args:
        if a in ("-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"):
            return f"find {a} can change state or run commands"
    return None


def _hostname_check(args: list[str]) -> str | None:
    if any(not a.startswith("-") for a in args) or any(a in ("-F", "--file", "-b", "--boot") for a in args):
        return "hostname with a name (or a file) sets it"
    return None


CURL_FLAGS = {"-s", "--silent", "-S", "--show-error", "-f", "--fail", "--fail-with-body", "-i", "--include",
              "-v", "--verbose", "-L", "--location", "-k", "--insecure", "-G", "--get", "-I", "--head",
              "--compressed", "-g", "--globoff", "-4", "-6", "--no-progress-meter"}
CURL_VALUED = {"-m", "--max-time", "--connect-timeout", "-H", "--header", "-w", "--write-out",
               "--retry", "--retry-max-time", "-A", "--user-agent", "-X", "--request"}


def _curl_check(args: list[str]) -> str | None:
    """GET (or HEAD) over http(s) only; no bodies, no uploads, no output files, no config files."""
    i = 0
    while i < len(args):
        a = args[i]
        name, _, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if a.startswith("-") and len(a) > 2 and not a.startswith("--"):
            if name[:2] in CURL_VALUED:  # -m5, -XGET
                value = a[2:]
                if name[:2] == "-X" and value.upper() not in ("GET", "HEAD"):
                    return f"curl -X {value} is not a read"
                i += 1
                continue
            if all(f"-{c}" in CURL_FLAGS for c in a[1:]):  # -sS, -sSf
                i += 1
                continue
            return f"curl option {a} is not known to be read-only"
        if name in CURL_FLAGS:
            i += 1
        elif name in CURL_VALUED:
            value = inline if inline else (args[i + 1] if i + 1 < len(args) else "")
            if name in ("-X", "--request") and value.upper() not in ("GET", "HEAD"):
                return f"curl {name} {value} is not a read"
            i += 1 if inline else 2
        elif a.startswith("-"):
            return f"curl option {a} is not known to be read-only"
        elif not re.match(r"^https?://", a):
            return f"curl target {a!r} is not an http(s) URL"
        else:
            i += 1
    return None


def _any(_args: list[str]) -> str | None:
    return None


# Commands whose every use (given the argument check) only reads. Commands that can write files
# (sort -o, find -delete, dmesg -c, sed -i ...) are either checked or left out; interpreters,
# `env`, `xargs`, `awk`, `tee` are left out because they run or write anything.
READ_ONLY_COMMANDS: dict[str, ArgCheck] = {
    **dict.fromkeys(
        ("cat", "ls", "ps", "ss", "netstat", "df", "du", "free", "uptime", "grep", "egrep", "fgrep", "head",
         "tail", "wc", "stat", "file", "uname", "id", "whoami", "pwd", "echo", "printf", "cut", "tr", "jq",
         "nproc", "lscpu", "lsblk", "findmnt", "vmstat", "pgrep", "pidof", "which", "getent", "true", "false",
         "md5sum", "sha256sum", "basename", "dirname", "readlink", "realpath", "lsof", "iostat", "mpstat"),
        _any),
    "date": _no_flags("-s", "--set"),
    "sort": _no_flags("-o", "--output"),
    "find": _find_check,
    "dmesg": _no_flags("-c", "-C", "-D", "-E", "-n", "--clear", "--read-clear", "--console-off",
                       "--console-on", "--console-level"),
    "journalctl": _no_flags("--rotate", "--vacuum-size", "--vacuum-time", "--vacuum-files", "--flush",
                            "--sync", "--relinquish-var", "--smart-relinquish-var", "--setup-keys",
                            "--update-catalog"),
    "hostname": _hostname_check,
    "curl": _curl_check,
}

# Never run, approved or not.
DENIED_COMMANDS = frozenset({
    "mkfs", "dd", "shred", "wipefs", "fdisk", "sfdisk", "parted", "mkswap", "shutdown", "reboot", "poweroff",
    "halt", "init", "telinit", "systemctl", "service", "iptables", "ip6tables", "nft", "tc", "sudo", "su",
    "doas", "nsenter", "unshare", "chroot", "mount", "umount", "insmod", "rmmod", "modprobe", "sysctl",
    "nc", "ncat", "netcat", "socat", "ssh", "scp", "docker", "kill", "pkill", "killall",
})
# Words after which the next word is (again) a command.
WRAPPERS = frozenset({"sudo", "env", "nohup", "nice", "timeout", "xargs", "exec", "command", "builtin", "time",
                      "stdbuf", "ionice", "watch", "then", "do", "else", "!", "{"})
SEPARATORS = frozenset({"|", "||", "&&", ";", "&", "(", ")", "|&", ";;"})
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})

Kind = Literal["read_only", "needs_approval", "denied"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def _command_name(word: str) -> str:
    base = word.rsplit("/", 1)[-1]
    return "mkfs" if base.startswith("mkfs.") else base


def _denied(tokens: list[str], depth: int = 0) -> str | None:
    at_command = True
    skip_options = False
    for i, tok in enumerate(tokens):
        if tok in SEPARATORS:
            at_command, skip_options = True, False
            continue
        if not at_command:
            continue
        if skip_options and (tok.startswith("-") or re.fullmatch(r"[0-9.]+[smhd]?", tok) or "=" in tok):
            continue
        if "=" in tok and not tok.startswith("-") and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tok):
            continue  # VAR=value before the command
        name = _command_name(tok)
        if name in DENIED_COMMANDS:
            return f"{name} is never run by the operator"
        if name in SHELLS and depth < 3:  # sh -c '...': look inside the string too
            for j in range(i + 1, len(tokens) - 1):
                if tokens[j] == "-c":
                    try:
                        inner = _denied(_tokens(tokens[j + 1]), depth + 1)
                    except ValueError:
                        return "cannot parse the command given to the shell"
                    if inner:
                        return inner
        at_command = name in WRAPPERS
        skip_options = at_command
    return None


def classify(command: str) -> Verdict:
    """Sort a command into read_only / needs_approval / denied (see the module docstring)."""
    if not command.strip():
        return Verdict("denied", "empty command")
    if any(c in command for c in "\n\r\0"):
        return Verdict("denied", "one command per call: no newlines or NUL bytes")
    if re.search(r":\s*\(\s*\)\s*\{", command):
        return Verdict("denied", "a fork bomb is never run")
    # Inside $(...) or backticks a command can hide anywhere: expose them to the deny check.
    exposed = command.replace("$(", " ( ").replace("`", " ; ").replace("<(", " ( ").replace(">(", " ( ")
    try:
        tokens = _tokens(exposed)
    except ValueError as e:
        return Verdict("denied", f"cannot parse the command: {e}")
    denied = _denied(tokens)
    if denied:
        return Verdict("denied", denied)
    if exposed != command:
        return Verdict("needs_approval", "command substitution is not known to be read-only")
    return _read_only(_tokens(command))


def _read_only(tokens: list[str]) -> Verdict:
    segments: list[list[str]] = [[]]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("|", "||", "&&", ";"):
            segments.append([])
        elif tok in (">", ">>", ">|", "&>", ">&"):
            target = tokens[i + 1] if i + 1 < len(tokens) else ""
            if target != "/dev/null" and not (tok == ">&" and target in ("1", "2")):
                return Verdict("needs_approval", f"output redirection to {target or 'nothing'} writes")
            i += 1
        elif tok == "<":
            i += 1  # input from a file only reads it
        elif tok in ("&", "(", ")", "|&", "<<", "<<<", ";;", "<>"):
            return Verdict("needs_approval", f"{tok!r} is not allowed in a read-only command")
        else:
            if tok.isdigit() and i + 1 < len(tokens) and tokens[i + 1] in (">", ">>", ">&", "<"):
                pass  # a file descriptor number: 2>/dev/null
            else:
                segments[-1].append(tok)
        i += 1
    for seg in segments:
        if not seg:
            return Verdict("needs_approval", "empty pipeline stage")
        word = seg[0]
        name = _command_name(word)
        if "/" in word and word.rsplit("/", 1)[0] not in TRUSTED_DIRS:
            return Verdict("needs_approval", f"{word} is not a system command")
        check = READ_ONLY_COMMANDS.get(name)
        if check is None:
            return Verdict("needs_approval", f"{name} is not on the read-only list")
        why = check(seg[1:])
        if why:
            return Verdict("needs_approval", why)
    return Verdict("read_only", "every part is a known read-only command")


# -- the shell the diagnoser and the action use -------------------------------------------------


@dataclass
class Shell:
    """Policy plus sandbox settings, shared by the diagnoser's tool and the `run_shell` action."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    max_output: int = DEFAULT_MAX_OUTPUT
    hidden: list[str] | None = None  # None: default_hidden()
    bwrap: str | None = None  # None: found on PATH
    sandbox: Literal["bwrap", "docker"] = "bwrap"  # docker: operator_tui/agent/docker_sandbox.py
    docker_host: str | None = None  # None: DOCKER_HOST, else the project's local engine

    def check(self) -> str:
        """The sandbox to use (bwrap's path, or "docker"); raises SandboxUnavailable when it cannot run."""
        if self.sandbox == "docker":
            from operator_tui.agent import docker_sandbox

            try:
                docker_sandbox.check(self.docker_host)
            except docker_sandbox.DockerSandboxUnavailable as e:
                raise SandboxUnavailable(str(e)) from e
            return "docker"
        if self.bwrap is not None:
            if not os.access(self.bwrap, os.X_OK):
                raise SandboxUnavailable(f"bwrap not executable at {self.bwrap}")
            return self.bwrap
        return find_bwrap()

    def classify(self, command: str) -> Verdict:
        return classify(command)

    async def run(self, command: str, timeout_s: float | None = None) -> ShellResult:
        timeout = min(timeout_s or self.timeout_s, 300.0)
        if self.sandbox == "docker":
            from operator_tui.agent import docker_sandbox

            try:
                return ShellResult(**await docker_sandbox.run(command, timeout, self.max_output, self.docker_host))
            except docker_sandbox.DockerSandboxUnavailable as e:
                raise SandboxUnavailable(str(e)) from e
        return await run_sandboxed(command, timeout, self.max_output, hidden=self.hidden, bwrap=self.check())


class ShellParams(ActionParams):
    command: str = Field(min_length=1, max_length=4000, description="a /bin/sh command line")
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=300, description="killed after this many seconds")


def shell_action(shell: Shell) -> ActionDef:
    """`run_shell` as an engine action: risk high, not idempotent, run in the same sandbox."""

    async def precheck(_obs: Observation, p: ShellParams) -> list[str]:
        problems = []
        verdict = classify(p.command)
        if verdict.kind == "denied":
            problems.append(f"refused: {verdict.reason}")
        try:
            shell.check()
        except SandboxUnavailable as e:
            problems.append(str(e))
        return problems

    async def execute(p: ShellParams, ctx: ActionContext) -> ActionOutcome:
        verdict = classify(p.command)
        if verdict.kind == "denied":  # the precheck refuses it too; this holds if the policy changed since
            raise ActionFailed(f"refused: {verdict.reason}")
        try:
            result = await shell.run(p.command, p.timeout_s)
        except SandboxUnavailable as e:
            raise ActionFailed(str(e)) from e
        data = result.model_dump()
        if result.timed_out:
            raise ActionFailed(f"timed out after {p.timeout_s:g} s", data=data)
        if result.exit_code != 0:
            raise ActionFailed(f"exited with {result.exit_code}: {result.stderr.strip()[-300:]}", data=data)
        return ActionOutcome(detail=f"sandboxed command: {result.summary()}", data=data)

    return ActionDef(
        "run_shell",
        "Run a shell command in the operator's sandbox (read-only root filesystem, private /tmp, timeout, "
        "output cap; the network is shared). Used for commands not known to be read-only: needs approval "
        "when approval is risky or all.",
        ShellParams, RiskTier.high, False, lambda p: "shell", precheck, execute,
        lambda p: f"$ {p.command}   (sandboxed, timeout {p.timeout_s:g} s)",
    )


def register_shell_action(catalogue: dict[str, ActionDef], shell: Shell) -> ActionDef:
    """Offer `run_shell` in an engine's catalogue (once)."""
    existing = catalogue.get("run_shell")
    if existing is None:
        existing = catalogue["run_shell"] = shell_action(shell)
    return existing
