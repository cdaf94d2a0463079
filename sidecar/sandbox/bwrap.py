"""L1 sandbox: bubblewrap with an allow-list of mounts and, as root, a real unprivileged uid via setpriv.

No user namespace is created when we are root, so the ``setpriv`` inside gives a real kernel uid (uid_base+slot):
file permissions and RLIMIT_NPROC then apply as to any other user. The pid namespace plus ``--die-with-parent``
guarantees that killing bwrap kills every process of the run, including ``setsid`` escapes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from sidecar.sandbox.base import SandboxLevel
from sidecar.sandbox.uids import DEFAULT_UID_BASE, UID_LOCK_DIR
from sidecar.sandbox.wrapped import RunRequest, WrappedSandbox, Wrapper, rlimit_pairs

_PRLIMIT_OPTIONS = {
    "RLIMIT_NPROC": "nproc",
    "RLIMIT_AS": "as",
    "RLIMIT_FSIZE": "fsize",
    "RLIMIT_CPU": "cpu",
    "RLIMIT_CORE": "core",
}
_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_MASKED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
_SETPRIV_DROP = ["--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]


def tools_missing() -> list[str]:
    """Names of the programs this level needs that are not on PATH."""
    return [tool for tool in ("bwrap", "prlimit", "setpriv") if shutil.which(tool) is None]


class _Mounts:
    """Builds the mount part of the command line, creating each missing parent directory with mode 0755.

    bwrap would otherwise create intermediate directories with mode 0700, which the sandbox uid cannot traverse.
    """

    def __init__(self) -> None:
        self.args: list[str] = []
        self._bound: list[str] = []
        self._made: set[str] = {"/"}

    def _under_bound(self, path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in self._bound)

    def _parents(self, path: str) -> None:
        for parent in reversed(Path(path).parents):
            name = str(parent)
            if name not in self._made and not self._under_bound(name):
                self.args += ["--perms", "0755", "--dir", name]
                self._made.add(name)

    def bind(self, source: str, dest: str | None = None, *, writable: bool = False) -> None:
        dest = dest or source
        self._parents(dest)
        self.args += ["--bind" if writable else "--ro-bind", source, dest]
        self._bound.append(dest)

    def special(self, option: str, dest: str, *, perms: str | None = None) -> None:
        self._parents(dest)
        self.args += (["--perms", perms] if perms else []) + [option, dest]
        self._made.add(dest)

    def symlink(self, target: str, dest: str) -> None:
        self.args += ["--symlink", target, dest]


def _python_roots(workspace: Path) -> list[str]:
    roots = []
    for root in dict.fromkeys(Path(prefix).resolve() for prefix in (sys.base_prefix, sys.prefix)):
        # Under /usr it is already mounted; inside the workspace it must stay writable.
        if not root.is_relative_to("/usr") and not root.is_relative_to(workspace):
            roots.append(str(root))
    return roots


def env_args(env: dict[str, str]) -> bytes:
    """``--setenv`` options in bwrap's ``--args`` format (NUL-separated), so values never show up in ``ps``."""
    return b"".join(b"--setenv\0%s\0%s\0" % (key.encode(), value.encode()) for key, value in env.items())


def bwrap_argv(
    request: RunRequest, *, env_fd: int, bwrap: str = "bwrap", prlimit: str = "prlimit", setpriv: str = "setpriv"
) -> list[str]:
    """The full ``prlimit … -- bwrap … -- setpriv … -- argv`` command line for one run.

    Args:
        request: The validated run.
        env_fd: A file descriptor the wrapper inherits, holding :func:`env_args` of ``request.env``.
        bwrap: Path of bwrap; likewise ``prlimit`` and ``setpriv``.
    """
    limits = rlimit_pairs(request.limits, request.uid)
    cmd = [prlimit, *(f"--{_PRLIMIT_OPTIONS[name]}={soft}:{hard}" for name, (soft, hard) in limits.items())]
    cmd += ["--", bwrap]
    mounts = _Mounts()
    mounts.bind("/usr")
    for name in _TOP_LEVEL_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            mounts.symlink(os.readlink(path), path)
        elif os.path.isdir(path):
            mounts.bind(path)
    mounts.bind("/etc")
    for masked in _MASKED_FILES:
        if os.path.exists(masked):
            mounts.args += ["--ro-bind", "/dev/null", masked]
    resolv = os.path.realpath("/etc/resolv.conf")
    if request.network and os.path.exists(resolv) and not resolv.startswith(("/etc/", "/usr/")):
        mounts.bind(resolv)  # e.g. systemd-resolved's stub under /run
    mounts.special("--proc", "/proc")
    mounts.special("--dev", "/dev")
    mounts.special("--tmpfs", "/tmp", perms="1777")
    for root in _python_roots(request.workspace):
        mounts.bind(root)
    mounts.bind(str(request.workspace), writable=True)
    cmd += mounts.args
    cmd += ["--chdir", str(request.cwd), "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not request.network:
        cmd.append("--unshare-net")
    cmd += ["--die-with-parent", "--new-session", "--clearenv", "--args", str(env_fd), "--"]
    if request.uid is not None:
        cmd += [setpriv, f"--reuid={request.uid}", f"--regid={request.uid}", *_SETPRIV_DROP, "--"]
    return cmd + request.argv


class BwrapSandbox(WrappedSandbox):
    """L1: bubblewrap (see the module docstring)."""

    level = SandboxLevel.BWRAP

    def __init__(
        self, *, uid_base: int = DEFAULT_UID_BASE, kill_grace_s: float = 3.0, uid_lock_dir: Path = UID_LOCK_DIR
    ) -> None:
        super().__init__(uid_base=uid_base, kill_grace_s=kill_grace_s, uid_lock_dir=uid_lock_dir)
        self._tools = {tool: shutil.which(tool) or tool for tool in ("bwrap", "prlimit", "setpriv")}

    def describe(self) -> str:
        who = f"uid {self.uid_base}+slot via setpriv" if self.drops_uid else "our own uid (not root)"
        return (
            "bwrap: allow-list mounts (/usr, /etc without shadow, Python, workspace), private /tmp, "
            f"pid/ipc/uts/net namespaces, {who}, rlimits"
        )

    @contextlib.contextmanager
    def _command(self, request: RunRequest) -> Iterator[Wrapper]:
        env_fd = os.memfd_create("agentcom-sandbox-env")  # close-on-exec: only pass_fds hands it to bwrap
        try:
            os.write(env_fd, env_args(request.env))
            os.lseek(env_fd, 0, os.SEEK_SET)
            yield Wrapper(bwrap_argv(request, env_fd=env_fd, **self._tools), pass_fds=(env_fd,))
        finally:
            os.close(env_fd)

    def _returncode(self, raw: int) -> int:
        # bwrap reports a child killed by signal N as exit code 128+N, as a shell does.
        if 128 < raw <= 128 + signal.NSIG:
            return -(raw - 128)
        return raw
