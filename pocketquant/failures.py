"""How every entry point ends when something goes wrong (the `pocketquant` CLI and stages/*.py).

Bad input or a failing environment (a missing or unreadable file, no permission, a full disk) is
one line on stderr naming the file, tensor or key at fault, and exit status 2. Anything else is a
bug: one line saying so, exit status 1. The traceback is printed only with --debug (or
POCKETQUANT_DEBUG=1 in the environment). SIGTERM and SIGHUP unwind the program like Ctrl-C does, so
every `atomic_path` removes its temporary file on the way out (exit status 128 + the signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
import unicodedata
from collections.abc import Callable, Iterator

from pocketquant.errors import PocketquantError, os_reason

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130  # what a shell reports for SIGINT
DEBUG_ENV = "POCKETQUANT_DEBUG"
CLEANUP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s))


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM/SIGHUP, so `finally` blocks and atomic outputs clean up.
    A BaseException, like KeyboardInterrupt: `except Exception` in library code does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def one_line(text: str) -> str:
    """Line breaks become spaces and other control characters (and lone surrogates, from file names
    that are not UTF-8) become escapes, so a message is one printable line."""
    out = []
    for ch in " ".join(part.strip() for part in text.splitlines() if part.strip()):
        if unicodedata.category(ch) in ("Cc", "Cs") and ch != "\t":
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def describe_os_error(exc: OSError) -> str:
    """'PATH: reason' for an OSError (the path is what the user can act on)."""
    reason = os_reason(exc)
    names = [os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) for an exception that ended a command."""
    if isinstance(exc, PocketquantError):
        return EXIT_BAD_INPUT, one_line(str(exc))
    if isinstance(exc, OSError):
        return EXIT_BAD_INPUT, one_line(describe_os_error(exc))
    if isinstance(exc, MemoryError):
        return EXIT_BAD_INPUT, "out of memory (the input is larger than this machine can hold)"
    if isinstance(exc, Terminated):
        return 128 + exc.signum, f"terminated by {exc}; temporary files removed"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    detail = one_line(f"{type(exc).__name__}: {exc}")
    return EXIT_BUG, f"internal error ({detail}); this is a bug: rerun with --debug and report the traceback"


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise Terminated in the main thread (once: a second signal
    during the cleanup is ignored). Elsewhere (not the main thread) this does nothing."""

    def handler(signum: int, _frame: object) -> None:
        for s in CLEANUP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {}
    try:
        for s in CLEANUP_SIGNALS:
            previous[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _close_progress_bars() -> None:
    """Close progress bars an exception left open, so the error starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def debug_requested(argv: list[str] | None = None) -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or (argv is not None and "--debug" in argv)


def run_reporting(prog: str, fn: Callable[[], int | None], *, debug: bool = False) -> int:
    """Run `fn` (a command's body) and return its exit status; on failure print one line
    '<prog>: error: <message>' (and the traceback first when `debug`)."""
    # A tensor or file name that is not UTF-8 must not crash printing it.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    try:
        with signals_unwind():
            return int(fn() or 0)
    except SystemExit:
        raise
    except BrokenPipeError:
        # `pocketquant ... | head`: the reader went away; say nothing more (as cat does)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else EXIT_BAD_INPUT
    except BaseException as exc:  # noqa: BLE001 - the one place every failure is reported
        code, message = describe(exc)
        _close_progress_bars()
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        return code
