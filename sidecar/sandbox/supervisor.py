"""Subreaper supervisor: run one command confined, then kill everything it left behind.

Run as a separate interpreter between the sidecar and the command (``python -I path/to/supervisor.py``); reads a
JSON spec from stdin (written by ``supervised.py``) and gives the command ``/dev/null`` as stdin and its own stdout
and stderr. As child subreaper it inherits every orphan, so processes that escaped with ``setsid`` or a
double fork stay its descendants. When the command exits, or on SIGTERM/SIGINT/SIGHUP, it SIGKILLs all
descendants (and, when it dropped to a dedicated uid, every process of that uid), reaps them and exits with the
command's status: the same exit code, or death by the same signal.

Exit codes of its own: 125 when the confinement could not be applied (the command is never run unconfined),
126 when the command is not executable, 127 when it is not found.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import time
from typing import Any

if __package__:
    from sidecar.sandbox import landlock_rules
else:
    # Run by path under -I, so neither the project nor the workspace is on sys.path; appending (not prepending)
    # the supervisor's own folder means no module there can shadow the standard library.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import landlock_rules  # type: ignore[no-redef, import-not-found]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_KILL_TIMEOUT_S = 5.0
EXIT_CONFINE_FAILED = 125


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _descendants(root_pid: int) -> list[int]:
    """Every live or zombie descendant of ``root_pid``, from the parent links in ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                data = stat_file.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    found: list[int] = []
    stack = [root_pid]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def _confine(spec: dict[str, Any]) -> None:
    """Runs in the forked child before exec: rlimits, Landlock, then the uid drop (it needs root, so it comes last)."""
    try:
        for name, (soft, hard) in spec["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        landlock = spec.get("landlock")
        if landlock is not None:
            rules = [(path, rights) for path, rights in landlock["rules"]]
            landlock_rules.restrict(rules, deny_tcp=landlock["deny_tcp"])
        if spec.get("uid") is not None:
            os.setgroups([])
            os.setresgid(spec["gid"], spec["gid"], spec["gid"])
            os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can give the command back what it just lost
    except Exception as exc:
        os.write(2, f"sandbox: cannot confine the command: {exc}\n".encode())
        raise


class Supervisor:
    """Owns one command's process tree."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.child_pid: int | None = None
        self.child_status: int | None = None
        self.terminated = False

    def on_signal(self, signum: int, frame: object) -> None:
        self.terminated = True
        self.kill_all()

    def start(self) -> int | None:
        """Start the command; return an exit code of our own if it could not be started."""
        argv = self.spec["argv"]
        try:
            child = subprocess.Popen(
                argv,
                cwd=self.spec["cwd"],
                env=self.spec["env"],
                stdin=subprocess.DEVNULL,
                preexec_fn=functools.partial(_confine, self.spec),
            )
        except FileNotFoundError:
            sys.stderr.write(f"sandbox: {argv[0]}: command not found\n")
            return 127
        except PermissionError as exc:
            sys.stderr.write(f"sandbox: {argv[0]}: {exc.strerror}\n")
            return 126
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            sys.stderr.write(f"sandbox: cannot start {argv[0]}: {exc}\n")
            return EXIT_CONFINE_FAILED
        # The status is collected by our own waitpid loop, never by Popen.
        child.returncode = 0
        self.child_pid = child.pid
        if self.terminated:
            self.kill_all()
        return None

    def wait(self) -> None:
        while self.child_status is None:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            self._record(pid, status)

    def _record(self, pid: int, status: int) -> None:
        if pid == self.child_pid:
            self.child_status = status

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._record(pid, status)

    def kill_all(self) -> None:
        """SIGKILL and reap every descendant, repeating until none is left (a fork bomb converges)."""
        self._sweep_uid()
        me = os.getpid()
        deadline = time.monotonic() + _KILL_TIMEOUT_S
        while True:
            self._reap()
            pids = _descendants(me)
            if not pids or time.monotonic() > deadline:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)

    def _sweep_uid(self) -> None:
        # kill(-1) from a process whose only identity is the sandbox uid reaches exactly that uid's processes,
        # atomically with respect to fork, wherever they are in the process tree.
        uid = self.spec.get("uid")
        if uid is None:
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(self.spec["gid"], self.spec["gid"], self.spec["gid"])
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        while True:
            try:
                reaped, status = os.waitpid(pid, 0)
            except ChildProcessError:
                return
            if reaped == pid:
                return


def _exit_like(status: int | None) -> int:
    if status is None:
        return EXIT_CONFINE_FAILED
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    signum = os.WTERMSIG(status)
    sys.stdout.flush()
    sys.stderr.flush()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP cannot be changed and are fatal anyway
    os.kill(os.getpid(), signum)
    return 128 + signum  # only reached for signals whose default action is not to terminate


def main() -> int:
    parent_pid = os.getppid()
    spec = json.loads(sys.stdin.buffer.read())
    supervisor = Supervisor(spec)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        return EXIT_CONFINE_FAILED  # the sidecar died before PDEATHSIG was armed
    failure = supervisor.start()
    if failure is not None:
        return failure
    supervisor.wait()
    supervisor.kill_all()
    return _exit_like(supervisor.child_status)


if __name__ == "__main__":
    sys.exit(main())
