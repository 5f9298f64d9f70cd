"""Run the real `copier` command line many times, fast, and watch what it writes.

- `CopierServer`: a process that has imported Copier (and the template's own
  package) once and forks one child per run; the child is exactly
  `python -m copier ...` (Copier's CLI, its exception handling, atexit,
  signals), in its own process group, minus the ~0.6 s of imports.
- `Inotify`: ctypes over Linux inotify, counting file events under a tree so a
  test can send a signal right after the k-th one.
- `snapshot` / `restore`: a tree's files and directories, to compare and reset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_SERVER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])  # the template's own rezolus_sampler, as its extension wants
    import copier._cli, copier._main, jinja2, yaml, questionary, plumbum  # noqa: F401
    import rezolus_sampler.copier_glue  # noqa: F401
    from pathlib import Path
    from rezolus_sampler.spec import vmlinux
    # Read the trees' vmlinux.h once here, as one long process would (whatever the
    # model's reader is called; without it each run reads them itself).
    read = getattr(vmlinux, "index", None) or getattr(vmlinux, "signatures", None)
    for tree in sys.argv[2:]:
        for arch in getattr(vmlinux, "ARCHES", ("x86_64", "aarch64")):
            try:
                read(Path(tree), arch)
            except Exception:
                pass
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            os.environ.update(request.get("env", {}))
            plumbum.local.env.update(**request.get("env", {}))  # Copier's tasks take theirs
            os.chdir(request["cwd"])
            out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            sys.argv = ["copier", *request["argv"]]
            copier._cli.CopierApp.run()  # sys.exit: atexit handlers run as in `python -m copier`
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)
    """
)


@dataclass
class Run:
    pid: int
    server: "CopierServer"
    out: Path
    returncode: int | None = None

    def wait(self) -> "Run":
        self.returncode = json.loads(self.server.proc.stdout.readline())["status"]
        return self

    @property
    def output(self) -> str:
        return self.out.read_text(errors="replace")


class CopierServer:
    def __init__(self, template: Path, workdir: Path, trees=()):
        self.workdir = workdir
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(template), *map(str, trees)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def start(self, cwd: Path, *argv: str, env: dict | None = None) -> Run:
        self.count += 1
        out = self.workdir / f"copier-run-{self.count}.txt"
        request = {"cwd": str(cwd), "argv": list(argv), "out": str(out), "env": env or {}}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return Run(json.loads(self.proc.stdout.readline())["pid"], self, out)

    def run(self, cwd: Path, *argv: str, env: dict | None = None) -> Run:
        return self.start(cwd, *argv, env=env).wait()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


TEMPLATE_PARTS = ("copier.yml", "template", "hooks", "rezolus_sampler", "pyproject.toml")


def copy_template(dst: Path, src: Path = REPO) -> Path:
    """What Copier needs of this template (no tests, benchmarks or build output:
    Copier clones and deletes the template several times per update)."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (src / part).exists():
            shutil.copy2(src / part, dst / part)
    return dst


def template_repo(dst: Path) -> Path:
    """This working copy as a one-commit git repository without tags, as Copier
    wants a template it records (`_commit`) and `copier update` finds again; a
    tagged repository would be rendered at its newest release instead."""
    copy_template(dst)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "template"]):
        subprocess.run(git + args, cwd=dst, check=True, capture_output=True)
    return dst


@pytest.fixture(scope="session")
def copier_cli(tmp_path_factory):
    """`copier_cli(cwd, *argv, env=None)` -> (returncode, output): the copier command
    line through one session-wide server (import it into a test module to use it)."""
    server = CopierServer(REPO, tmp_path_factory.mktemp("copier-cli"))

    def run(cwd: Path, *argv: str, env: dict | None = None) -> Run:
        return server.run(cwd, *argv, env=env)

    yield run
    server.close()


# ------------------------------------------------------------------ inotify

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_ISDIR, IN_NONBLOCK = 0x100, 0x200, 0x40000000, 0o4000
WATCHED = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("iIII")


class Inotify:
    """File events (create, write done, rename, delete) in a set of directories;
    directories created under a watched one are watched as they appear."""

    def __init__(self, directories):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths: dict[int, Path] = {}
        for d in directories:
            self.watch(Path(d))

    def watch(self, directory: Path) -> None:
        wd = self._add(self.fd, os.fsencode(directory), WATCHED)
        if wd >= 0:
            self.paths[wd] = directory

    def events(self, timeout: float) -> list[tuple[int, Path]]:
        """Events that arrive within `timeout` seconds (empty list at the timeout)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        found, i = [], 0
        while i < len(data):
            wd, mask, _cookie, size = _EVENT.unpack_from(data, i)
            name = data[i + _EVENT.size : i + _EVENT.size + size].rstrip(b"\0")
            i += _EVENT.size + size
            path = self.paths.get(wd, Path("?")) / os.fsdecode(name)
            if mask & IN_CREATE and mask & IN_ISDIR:
                self.watch(path)
            found.append((mask, path))
        return found

    def close(self) -> None:
        os.close(self.fd)


# ------------------------------------------------------------------ trees


def snapshot(root: Path) -> tuple[dict[str, tuple[bytes, int]], set[str]]:
    """Every file (bytes, mode) and directory under `root`, .git aside."""
    files, dirs = {}, set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git":
            continue
        if path.is_dir() and not path.is_symlink():
            dirs.add(str(rel))
        else:
            files[str(rel)] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return files, dirs


def restore(root: Path, snap) -> None:
    """Put `root` back to `snap` (files, modes and directories)."""
    files, dirs = snap
    now_files, now_dirs = snapshot(root)
    for rel in sorted(now_dirs - dirs, key=len):
        shutil.rmtree(root / rel, ignore_errors=True)
    for rel in now_files:
        if rel not in files and (root / rel).exists():
            (root / rel).unlink()
    for rel in sorted(dirs - now_dirs, key=len):
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, (data, mode) in files.items():
        if now_files.get(rel) != (data, mode):
            (root / rel).write_bytes(data)
            os.chmod(root / rel, mode)


def differences(before, after) -> list[str]:
    """What differs between two snapshots, for an assertion message."""
    (bf, bd), (af, ad) = before, after
    out = [f"+{p}" for p in sorted(set(af) - set(bf))] + [f"-{p}" for p in sorted(set(bf) - set(af))]
    out += [f"~{p}" for p in sorted(set(af) & set(bf)) if af[p] != bf[p]]
    out += [f"+{p}/" for p in sorted(ad - bd)] + [f"-{p}/" for p in sorted(bd - ad)]
    return out
