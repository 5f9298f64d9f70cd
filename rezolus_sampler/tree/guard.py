"""The Copier process's half of an atomic copy.

Copier writes the rendered files first and runs the registration task after,
into a directory that already exists, so its own clean-up never applies. The
preflight (the first path Copier renders) calls `begin`, which

- begins the rollback journal (`journal.Journal.begin`): the sampler
  directory's previous state and the directories the copy will create;
- makes sure this process rolls the journal back unless the registration task
  committed it: at exit (`atexit`), after SIGINT, SIGTERM or SIGHUP (turned
  into KeyboardInterrupt, which Copier reports as "Execution stopped by user";
  `subprocess.run` then kills a running task first), and after an exception
  while rendering (one line instead of a traceback).

The task commits the journal when the sampler is registered; after that an
interruption leaves the complete sampler. Handlers chain to the ones they
replace and do nothing once no journal of this process is pending, so a
process that keeps running after Copier (a test, a library user) is not changed.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path

from rezolus_sampler.tree.journal import JOURNAL, Journal, JournalError, temp_path

_armed: dict[Path, str] = {}  # tree root -> "copy of <name>"
_begun: set[Path] = set()  # roots whose journal is written (or could not be)
_written: dict[Path, dict] = {}  # roots whose journal was written -> the registration
_why: list[str] = []  # what stopped the operation (signal, exception)
_late: list[str] = []  # signals that came after the task committed
_installed = False
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _pending() -> list[Journal]:
    found = []
    for root in _armed:
        try:
            journal = Journal.load(root)
        except JournalError:
            continue
        if journal is not None and journal.owner[0] == os.getpid():
            found.append(journal)
    return found


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}:{where}"
    return f"{type(exc).__name__}: {exc}"


def _active() -> bool:
    """A journal of this process is pending, or being written right now."""
    return bool(_pending()) or any(root not in _begun for root in _armed)


def _make_handler(signum: int, previous):
    def handler(sig, frame):
        if not _active():
            if _armed:  # the task committed: the sampler is complete
                _late.append(f"interrupted by {signal.Signals(sig).name}")
            if callable(previous):
                return previous(sig, frame)
            if previous == signal.SIG_IGN:
                return None
            signal.signal(sig, signal.SIG_DFL)  # default action: die by the signal
            os.kill(os.getpid(), sig)
            return None
        _why.append(f"interrupted by {signal.Signals(sig).name}")
        raise KeyboardInterrupt

    return handler


def _excepthook(previous):
    def hook(kind, value, tb):
        if _active():
            _why.append(f"failed: {_describe(value)}")  # reported with the rollback, at exit
            return None
        if _armed and issubclass(kind, KeyboardInterrupt):
            return None  # a late Ctrl-C: the line at exit says the sampler is complete
        return previous(kind, value, tb)

    return hook


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    sys.excepthook = _excepthook(sys.excepthook)
    for signum in _SIGNALS:
        try:
            signal.signal(signum, _make_handler(signum, signal.getsignal(signum)))
        except (ValueError, OSError):
            pass  # not the main thread: Copier's own handling stays


def rollback_pending() -> list[str]:
    """Roll back every journal this process still holds; returns one line each."""
    lines = []
    for journal in _pending():
        for signum in _SIGNALS:  # a second Ctrl-C must not stop the rollback half-way
            try:
                signal.signal(signum, signal.SIG_IGN)
            except (ValueError, OSError):
                pass
        what = _armed.get(Path(journal.root), f"{journal.operation} of {journal.sampler}")
        cause = _why[0] if _why else "stopped before the sampler was registered"
        failed = journal.rollback()
        if failed:
            lines.append(
                f"rezolus-sampler: {what} {cause}; rollback incomplete ({', '.join(failed)}): "
                f"{Path(journal.root) / JOURNAL} keeps the originals, run "
                f"'rezolus-sampler recover {journal.root}'"
            )
        else:
            lines.append(
                f"rezolus-sampler: {what} {cause}; rendered files and registration rolled "
                "back: the tree is as it was"
            )
    for root in _armed:
        if not (root / JOURNAL).exists():
            temp_path(root / JOURNAL).unlink(missing_ok=True)
    return lines


def _complete(root: Path) -> bool:
    """The sampler is in the tree and fully registered (checked, not assumed)."""
    from rezolus_sampler.tree.register import Registration, RegistrationError, SAMPLERS_DIR, plan

    reg = Registration(**_written[root])
    if not (root / SAMPLERS_DIR / reg.group / "linux" / reg.sampler).is_dir():
        return False
    try:
        return plan(root, reg) == {}
    except RegistrationError:
        return False


def _at_exit() -> None:
    lines = rollback_pending()
    stop = (_why + _late)[:1]
    if not lines and stop:
        # No journal left: the interruption came before the copy wrote anything,
        # or the task finished first (committed, or rolled back and said so).
        for root, what in _armed.items():
            if root not in _written:
                lines.append(
                    f"rezolus-sampler: {what} {stop[0]} before anything was written: "
                    "the tree is as it was"
                )
            elif _complete(root):
                lines.append(
                    f"rezolus-sampler: {stop[0]} after {what.split(' of ', 1)[1]} was "
                    "registered: it is complete"
                )
    for line in lines:
        print(line, file=sys.stderr)


def begin(
    root: Path,
    operation: str,
    sampler: str,
    sampler_dir: Path,
    registration: dict,
    previous_answers: str | None = None,
) -> Journal:
    """Begin the journal of a copy or update of `sampler` into `root`, rolled back by
    this process unless the task commits it; `registration` is what the task will
    register. Raises JournalError (nothing written)."""
    root = Path(root).absolute()
    _install()
    _begun.discard(root)
    _armed[root] = f"{operation} of {sampler}"
    try:
        journal = Journal.begin(
            root,
            operation,
            sampler,
            Path(sampler_dir).absolute(),
            registration=registration,
            previous_answers=previous_answers,
        )
        _written[root] = registration
        return journal
    finally:
        _begun.add(root)
