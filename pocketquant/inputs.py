"""Opening input files without surprises: a FIFO, device or directory given as an input is refused
at once (opening a FIFO for reading would block forever), and every failure names the path."""

from __future__ import annotations

import contextlib
import os
import stat

from pocketquant.errors import InputError, PocketquantError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(
    path: str | os.PathLike[str], what: str = "input file", error: type[PocketquantError] = InputError
) -> int:
    """A read-only file descriptor of the regular file `path`; `error` naming the path otherwise.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; on a regular
    file it changes nothing."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: cannot read {what}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot open {what}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: is {file_kind(mode)}, not a regular file ({what})")
    return fd


def refuse_special_files(args: list[str], error: type[PocketquantError] = InputError) -> None:
    """`error` for the first argument that names an existing FIFO, device or socket: a safety net
    for entry points (the stage scripts) whose inputs are opened by libraries that would block on
    a FIFO. Directories and regular files pass; so does anything that does not exist yet."""
    for arg in args:
        try:
            mode = os.stat(arg).st_mode
        except (OSError, ValueError):
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise error(f"{arg}: is {file_kind(mode)}, not a regular file or directory")


def pread_exact(fd: int, buf: memoryview, offset: int) -> int:
    """Fill `buf` from `offset`; return how many bytes there were (fewer only at the end of file)."""
    done = 0
    n = len(buf)
    while done < n:
        if hasattr(os, "preadv"):
            k = os.preadv(fd, [buf[done:]], offset + done)
        else:  # pragma: no cover - platforms without preadv
            chunk = os.pread(fd, n - done, offset + done)
            k = len(chunk)
            buf[done : done + k] = chunk
        if k == 0:
            break
        done += k
    return done


def read_input_bytes(
    path: str | os.PathLike[str],
    what: str = "input file",
    *,
    max_bytes: int = 64 << 20,
    error: type[PocketquantError] = InputError,
) -> bytes:
    """The whole of a small input file (at most `max_bytes`, so a huge or endless file is refused)."""
    fd = open_regular(path, what, error)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise error(f"{path}: {what} is {size:,} bytes, more than the {max_bytes:,} allowed")
        buf = bytearray(size)
        try:
            n = pread_exact(fd, memoryview(buf), 0)
        except OSError as exc:
            raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
        return bytes(buf[:n])
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def read_input_text(
    path: str | os.PathLike[str],
    what: str = "input file",
    *,
    max_bytes: int = 64 << 20,
    error: type[PocketquantError] = InputError,
) -> str:
    """A small UTF-8 text input; `error` naming the path and the first bad byte if it is not UTF-8."""
    data = read_input_bytes(path, what, max_bytes=max_bytes, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def read_json_object(
    path: str | os.PathLike[str],
    what: str = "JSON file",
    *,
    max_bytes: int = 16 << 20,
    error: type[PocketquantError] = InputError,
) -> dict:
    """A small JSON file that must hold an object; `error` naming the path otherwise."""
    import json

    text = read_input_text(path, what, max_bytes=max_bytes, error=error)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{path}: {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: {what} must be a JSON object")
    return value
