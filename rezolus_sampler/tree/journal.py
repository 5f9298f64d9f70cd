"""A rollback journal: every change to a Rezolus tree is all-or-nothing.

A copy, update or removal changes several files: the sampler's own directory
(rendered by Copier) and the registration files (`build.rs`, module lists,
`config/agent.toml`, the analysis lists). Before the first of those writes, the
operation writes `.rezolus-sampler-journal.json` at the root of the tree: the
original bytes and mode of every file it is about to change, the directories
it is about to create, and which process owns it. Writers add a file's
original to the journal before they touch the file.

- `commit()` deletes the journal: from then on the change stands.
- `rollback()` puts back every original, deletes what the operation created
  (files, temporary files, directories) and then deletes the journal. Each step
  is idempotent, so a rollback that is itself interrupted is finished by the
  next one.
- A journal whose owner process is gone belongs to an operation that was
  killed (SIGKILL, power loss): `recover()` rolls it back; the preflight of the
  next copy and `rezolus-sampler recover` call it.

Temporary files have fixed names (`.<name>.rezolus-sampler.tmp` beside the file)
so a rollback finds the ones a killed writer left behind.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL = ".rezolus-sampler-journal.json"
_TMP_SUFFIX = ".rezolus-sampler.tmp"


class JournalError(Exception):
    """The journal cannot be written or read; nothing was changed by this operation."""


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_SUFFIX}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` (temp file + rename): readers see old or new, never half."""
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def process_token(pid: int) -> list[int] | None:
    """(pid, start time) of a live process; None when it is gone.

    The start time tells a reused pid from the owner that died."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        started = int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        started = 0
    return [pid, started]


def _rel(root: Path, path: Path) -> str:
    return str(Path(path).relative_to(root))


@dataclass
class Journal:
    root: Path
    operation: str  # copy, update, remove, register
    sampler: str  # <group>_<sampler>
    owner: list[int]
    sampler_dir: str = ""  # relative; the directory the operation renders or removes
    created_dirs: list[str] = field(default_factory=list)  # outermost first
    existing_dirs: list[str] = field(default_factory=list)  # under sampler_dir, before
    originals: dict[str, dict] = field(default_factory=dict)  # rel -> {data, mode}
    previous_answers: str | None = None  # the sampler's answers file before this operation
    registration: dict | None = None  # what the task registers (from the preflight's model)

    # ------------------------------------------------------------- storage

    @property
    def path(self) -> Path:
        return Path(self.root) / JOURNAL

    def _save(self) -> None:
        doc = {
            "version": 1,
            "operation": self.operation,
            "sampler": self.sampler,
            "owner": self.owner,
            "sampler_dir": self.sampler_dir,
            "created_dirs": self.created_dirs,
            "existing_dirs": self.existing_dirs,
            "originals": self.originals,
            "previous_answers": self.previous_answers,
            "registration": self.registration,
        }
        try:
            atomic_write(self.path, json.dumps(doc, indent=1).encode(), 0o644)
        except OSError as err:
            raise JournalError(f"cannot write the rollback journal {self.path}: {err}") from None

    @classmethod
    def load(cls, root: Path) -> "Journal | None":
        path = Path(root) / JOURNAL
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise JournalError(f"cannot read the rollback journal {path}: {err}") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise JournalError(f"{path} is not a rezolus-sampler journal this version reads")
        return cls(
            root=Path(root),
            operation=doc["operation"],
            sampler=doc["sampler"],
            owner=list(doc["owner"]),
            sampler_dir=doc.get("sampler_dir", ""),
            created_dirs=list(doc.get("created_dirs", [])),
            existing_dirs=list(doc.get("existing_dirs", [])),
            originals=dict(doc.get("originals", {})),
            previous_answers=doc.get("previous_answers"),
            registration=doc.get("registration"),
        )

    # ------------------------------------------------------------- writing

    @classmethod
    def begin(
        cls,
        root: Path,
        operation: str,
        sampler: str,
        sampler_dir: Path | None = None,
        owner_pid: int | None = None,
        registration: dict | None = None,
        previous_answers: str | None = None,
    ) -> "Journal":
        """Record the state of `sampler_dir` (and which of its parents are missing)
        before anything is written; refuse when another operation holds the tree.

        `previous_answers`: the sampler's answers before this operation, when the
        file in `sampler_dir` is not that (an update's migrations rewrote it)."""
        root = Path(root)
        pending = cls.load(root)
        if pending is not None:
            if pending.alive():
                raise JournalError(
                    f"another rezolus-sampler operation ({pending.operation} of "
                    f"{pending.sampler}, pid {pending.owner[0]}) is changing {root}; "
                    "wait for it to finish"
                )
            raise JournalError(
                f"{root / JOURNAL} is left from an interrupted {pending.operation} of "
                f"{pending.sampler}; run 'rezolus-sampler recover {root}' first"
            )
        pid = os.getpid() if owner_pid is None else owner_pid
        journal = cls(root, operation, sampler, process_token(pid) or [pid, 0])
        journal.registration = registration
        if sampler_dir is not None:
            d = Path(sampler_dir)
            journal.sampler_dir = _rel(root, d)
            missing = []
            while not d.exists() and d != root:
                missing.append(_rel(root, d))
                d = d.parent
            journal.created_dirs = list(reversed(missing))
            if Path(sampler_dir).is_dir():
                journal.existing_dirs.append(journal.sampler_dir)
                for path in sorted(Path(sampler_dir).rglob("*")):
                    if path.is_dir() and not path.is_symlink():
                        journal.existing_dirs.append(_rel(root, path))
                    else:
                        journal._remember(path)
                answers = Path(sampler_dir) / ".copier-answers.yml"
                if answers.is_file():
                    journal.previous_answers = answers.read_text(encoding="utf-8", errors="replace")
        if previous_answers is not None:
            journal.previous_answers = previous_answers
        journal._save()
        return journal

    def _remember(self, path: Path) -> bool:
        rel = _rel(self.root, path)
        if rel in self.originals:
            return False
        if path.is_symlink() or path.exists():
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise JournalError(f"{path} is not a regular file; refusing to change it")
            self.originals[rel] = {
                "data": base64.b64encode(path.read_bytes()).decode(),
                "mode": stat.S_IMODE(st.st_mode),
            }
        else:
            self.originals[rel] = {"data": None, "mode": None}
        return True

    def record(self, paths) -> None:
        """Save the originals of `paths` in the journal before they are written."""
        if any([self._remember(Path(p)) for p in paths]):
            self._save()

    def write(self, path: Path, data: bytes) -> None:
        """Write one file under the journal: original recorded first, mode kept."""
        path = Path(path)
        self.record([path])
        mode = self.originals[_rel(self.root, path)]["mode"]
        missing = []
        d = path.parent
        while not d.exists():
            missing.append(d)
            d = d.parent
        if missing:
            new = [_rel(self.root, m) for m in reversed(missing)]
            self.created_dirs += [m for m in new if m not in self.created_dirs]
            self._save()
            for m in reversed(missing):
                m.mkdir()
        atomic_write(path, data, mode)

    def remove_dir(self, directory: Path) -> None:
        """Delete a directory tree under the journal (its files are restored on rollback)."""
        directory = Path(directory)
        files, dirs = [], []
        for path in sorted(directory.rglob("*")):
            (dirs if path.is_dir() and not path.is_symlink() else files).append(path)
        rels = [_rel(self.root, d) for d in [directory, *dirs]]
        self.existing_dirs += [r for r in rels if r not in self.existing_dirs]
        self.record(files)
        shutil.rmtree(directory)

    def commit(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        _fsync_dir(self.path.parent)

    # ------------------------------------------------------------- undoing

    def alive(self) -> bool:
        """True while the owner process (the same one, not a reused pid) runs."""
        now = process_token(self.owner[0])
        return now is not None and (now[1] == self.owner[1] or 0 in (now[1], self.owner[1]))

    def rollback(self) -> list[str]:
        """Put the tree back as it was; returns the paths that could not be restored."""
        root = Path(self.root)
        failed: list[str] = []
        for rel, original in reversed(list(self.originals.items())):
            path = root / rel
            try:
                temp_path(path).unlink(missing_ok=True)
                if original["data"] is None:
                    if path.is_symlink() or path.exists():
                        path.unlink()
                    continue
                data = base64.b64decode(original["data"])
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                if not path.parent.is_dir():
                    path.parent.mkdir(parents=True, exist_ok=True)
                if (
                    path.is_symlink()
                    or not path.is_file()
                    or path.read_bytes() != data
                    or stat.S_IMODE(path.stat().st_mode) != original["mode"]
                ):
                    atomic_write(path, data, original["mode"])
            except OSError as err:
                failed.append(f"{rel} ({err.strerror or err})")
        # What this operation added inside directories that existed before.
        kept_dirs = set(self.existing_dirs)
        for rel in sorted(kept_dirs, key=len, reverse=True):
            base = root / rel
            if not base.is_dir():
                try:
                    base.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    failed.append(f"{rel} ({err.strerror or err})")
                continue
            for child in list(base.iterdir()):
                child_rel = _rel(root, child)
                if child_rel in self.originals or child_rel in kept_dirs:
                    continue
                try:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                except OSError as err:
                    failed.append(f"{child_rel} ({err.strerror or err})")
        for rel in reversed(self.created_dirs):
            path = root / rel
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
            except OSError as err:
                failed.append(f"{rel} ({err.strerror or err})")
        if not failed:
            self.commit()
            temp_path(self.path).unlink(missing_ok=True)
        return failed

    def previous_description(self) -> str | None:
        """The description the sampler was registered with before this operation."""
        if not self.previous_answers:
            return None
        import yaml

        try:
            answers = yaml.safe_load(self.previous_answers)
        except yaml.YAMLError:
            return None
        value = answers.get("description") if isinstance(answers, dict) else None
        return value if isinstance(value, str) else None


def recover(root: Path, own_is_stale: bool = False) -> str:
    """Finish the rollback of an operation that was killed; '' when there was none.

    `own_is_stale`: a journal owned by this very process is from an earlier
    operation that has ended (the preflight of a new copy calls it so)."""
    root = Path(root)
    try:
        journal = Journal.load(root)
    except JournalError as err:
        return str(err)
    if journal is None:
        temp_path(root / JOURNAL).unlink(missing_ok=True)
        return ""
    if journal.alive() and not (own_is_stale and journal.owner[0] == os.getpid()):
        return ""
    failed = journal.rollback()
    if failed:
        return (
            f"could not finish rolling back the interrupted {journal.operation} of "
            f"{journal.sampler}: {', '.join(failed)}; {root / JOURNAL} keeps the originals"
        )
    return f"rolled back the interrupted {journal.operation} of {journal.sampler}"
