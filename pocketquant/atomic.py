"""Write outputs atomically: to a temporary name beside the target, renamed into place on success.

A failure (exception, Ctrl-C, SIGTERM/SIGHUP through pocketquant.failures) leaves no half-written
file or directory behind, nor any directory created for the output; an existing output at the
target path is only replaced once the new one is complete. Problems with the output path (a
directory in the way, no permission, a read-only or full disk) are OutputErrors naming the target.

Temporary names are `.<target name>.pocketquant-<host>-<pid>-<random>.tmp`. A process killed with
SIGKILL cannot clean up, so each run of a target first removes temporaries of that same target whose
process (on this host) is gone; names of any other form are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from pocketquant.errors import OutputError, os_reason

TEMP_TAG = "pocketquant"
# errors that mean "this disk cannot take the output", whichever call reports them
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"


def _stem(name: str) -> str:
    """The target's name inside temp names; long names are hashed so the temp name stays < 255 bytes."""
    raw = name.encode("utf-8", "surrogateescape")
    return name if len(raw) <= 120 else hashlib.sha256(raw).hexdigest()[:24]


def temp_prefix(target: Path) -> str:
    return f".{_stem(target.name)}.{TEMP_TAG}-{_host_tag()}-{os.getpid()}-"


def _temp_pattern(target: Path) -> re.Pattern[str]:
    # mkstemp/mkdtemp add 8 characters of [a-z0-9_]
    word = "[A-Za-z0-9_]"
    stem = re.escape(_stem(target.name))
    return re.compile(rf"\.{stem}\.{TEMP_TAG}-(?P<host>{word}+)-(?P<pid>[0-9]+)-{word}{{8}}\.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def sweep_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of `target` left by killed runs (their process no longer exists on this
    host); return what was removed. Another live run's temporaries are left alone."""
    target = Path(target)
    pattern, host = _temp_pattern(target), _host_tag()
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    removed = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or m["host"] != host:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        _remove(target.parent / name)
        removed.append(target.parent / name)
    return removed


def _reason(exc: OSError, where: Path, written: Path | None = None) -> str:
    if exc.errno is None:  # numpy's tofile and the like report a short write without an errno
        if _disk_full(where):
            return f"no space left on device (disk full): {exc}"
        if written is not None and _at_size_limit(written):
            return f"File too large (the file size limit, ulimit -f): {exc}"
    return os_reason(exc)


def _at_size_limit(path: Path) -> bool:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return soft != resource.RLIM_INFINITY and path.stat().st_size >= soft - (1 << 16)
    except (ImportError, OSError, ValueError):
        return False


def _disk_full(where: Path) -> bool:
    try:
        st = os.statvfs(where)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _make_parents(target: Path, parent: Path) -> list[Path]:
    """Create the missing directories above `target`; return those this call created (top first)."""
    missing = []
    p = parent
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    if os.path.lexists(p) and not p.is_dir():
        raise OutputError(f"{target}: cannot create it: {p} is not a directory")
    created = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            created.append(d)
    except OSError as exc:
        _remove_dirs(created)
        raise OutputError(f"{target}: cannot create directory {d}: {_reason(exc, d.parent)}") from exc
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: never what someone else put there


def refuse_overwriting_inputs(
    target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]
) -> None:
    """OutputError if `target` is one of `inputs`: the same path, through `..` or a symlink, or a
    hard link to the same file. Called before anything is written."""
    target = Path(target)
    real_target = os.path.realpath(target)
    for inp in inputs:
        if inp is None:
            continue
        how = None
        if real_target == os.path.realpath(inp):
            same_spelling = os.path.abspath(target) == os.path.abspath(inp)
            how = "the same file" if same_spelling else "the same file, through a symlink or .."
        elif os.path.lexists(target):
            with contextlib.suppress(OSError):
                if os.path.samefile(target, inp):
                    how = "a hard link to it"
        if how is not None:
            raise OutputError(
                f"{target}: output would overwrite the input {inp} ({how}); choose another output path"
            )


def refuse_directory_output(target: Path) -> None:
    """OutputError when a file output's path is an existing directory."""
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file path for the output")


def _check_target(target: Path, directory: bool) -> None:
    if not directory:
        refuse_directory_output(target)


def _create_temp(target: Path, directory: bool) -> tuple[Path, list[Path]]:
    """A fresh temporary beside `target` (after sweeping stale ones), and the parent directories
    created for it."""
    created = _make_parents(target, target.parent)
    try:
        sweep_stale_temps(target)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        _remove_dirs(created)
        reason = _reason(exc, target.parent)
        raise OutputError(f"{target}: cannot write in {target.parent}: {reason}") from exc
    except BaseException:
        _remove_dirs(created)
        raise
    return tmp, created


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that becomes `target` when the block succeeds."""
    target = Path(target)
    _check_target(target, directory)
    tmp, created = _create_temp(target, directory)
    try:
        try:
            yield tmp
            _check_target(target, directory)
            if directory:
                os.chmod(tmp, 0o755)
                if os.path.lexists(target):
                    _remove(target)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            ours = exc.filename is None or str(exc.filename).startswith(str(tmp))
            if ours and (exc.errno in _DISK_ERRNOS or exc.errno is None):
                raise OutputError(f"{target}: cannot write: {_reason(exc, target.parent, tmp)}") from exc
            raise
    except BaseException:
        _remove(tmp)
        _remove_dirs(created)
        raise


@contextlib.contextmanager
def scratch_dir(beside: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary directory next to `beside` (same disk) for intermediate files, named like
    atomic_path's temporaries (so a killed run's leftovers are swept by the next run); always
    removed at the end."""
    tmp, created = _create_temp(Path(beside), directory=True)
    try:
        yield tmp
    finally:
        _remove(tmp)
        _remove_dirs(created)
