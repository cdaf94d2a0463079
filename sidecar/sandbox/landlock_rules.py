"""Landlock file-system and TCP rules through raw syscalls (ctypes, standard library only).

The ``landlock`` package on PyPI covers the file system only and may be missing, so the few syscalls are made
directly: one ruleset handles both file-system and TCP rights. This module is imported by the supervisor, which runs
as a separate interpreter with ``-I``, so it must not import anything from the project.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""Rights that may be granted on a path that is not a directory (others give EINVAL)."""

READ = EXECUTE | READ_FILE | READ_DIR
ALL = -1
"""Every right the running kernel handles; masked per ABI in :func:`restrict`."""

NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1


class LandlockError(OSError):
    """Landlock is unsupported or a rule could not be applied."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock syscall {number}: {os.strerror(err)}")
    return int(result)


def abi_version() -> int:
    """Return the kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (LandlockError, AttributeError):
        return 0


def _handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def restrict(rules: Iterable[tuple[str, int]], *, deny_tcp: bool) -> None:
    """Confine the calling process (and what it executes) to ``rules``; irreversible.

    Args:
        rules: ``(path, rights)`` pairs; rights are ``READ``, ``ALL`` or a bit mask. Missing paths are skipped.
        deny_tcp: Also refuse every TCP bind and connect (needs ABI 4; UDP is never covered by Landlock).

    Raises:
        LandlockError: Landlock is unavailable, or TCP denial was asked for on a kernel without ABI 4.
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockError(0, "Landlock is not supported by this kernel")
    if deny_tcp and abi < 4:
        raise LandlockError(0, f"Landlock ABI {abi} cannot restrict TCP (needs 4)")
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if deny_tcp else 0)
    attr_size = ctypes.sizeof(_RulesetAttr) if abi >= 4 else ctypes.sizeof(ctypes.c_uint64)
    ruleset_fd = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(attr_size), ctypes.c_uint32(0))
    try:
        for path, rights in rules:
            _add_path_rule(ruleset_fd, path, rights & handled)
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0))
    finally:
        os.close(ruleset_fd)


def _add_path_rule(ruleset_fd: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_ONLY
        rule = _PathBeneathAttr(rights, fd)
        _syscall(
            _SYS_ADD_RULE,
            ctypes.c_int(ruleset_fd),
            ctypes.c_int(_RULE_PATH_BENEATH),
            ctypes.byref(rule),
            ctypes.c_uint32(0),
        )
    finally:
        os.close(fd)
