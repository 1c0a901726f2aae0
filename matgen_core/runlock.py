"""One writer per run folder: an exclusive lock file, ``RUN_DIR/.matgen.lock``.

Whoever trains or resumes a run (the ``matgen`` command, an app job, torchrun's rank 0) holds
the run's lock for as long as it writes there; a second writer is refused with a message naming
the holder (host, pid, what, since when). The file holds JSON ``{"pid", "host", "started",
"what"}`` so people can see who holds it.

How it is exclusive: the file is ``flock``-ed (POSIX), so the operating system drops the lock
the moment its process dies, ``kill -9`` included; a lock file left behind by a dead process on
this host is then taken over, and :attr:`RunLock.took_over` says from whom (the caller prints
it). Without ``fcntl`` (Windows) the file is created exclusively and a holder counts as dead
when its pid is not alive on this host. A lock written on another host is never taken over
automatically: the message says to delete the file if nothing there is training the run.

Within one process the lock is re-entrant for the thread that holds it (the CLI takes it
before creating a run, then :func:`matgen_core.train.train` takes it again); another thread of
the same process (a second app job) is refused like another process.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
from pathlib import Path

from .errors import MatgenInputError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".matgen.lock"

_held: dict[str, "RunLock"] = {}  # resolved run folder -> this process's lock on it
_held_guard = threading.Lock()


class RunLockedError(MatgenInputError):
    """The run folder is locked by another writer; ``holder`` is the lock file's content."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def lock_path(run_dir) -> Path:
    return Path(run_dir) / LOCK_NAME


def read_holder(run_dir) -> dict | None:
    """Who holds (or last held) the run's lock: the lock file's JSON, or None without a file."""
    try:
        holder = json.loads(lock_path(run_dir).read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict | None) -> str:
    """'pid 123 on host "node1" (matgen train, since 2026-01-01 12:00:00)' for messages."""
    if not holder:
        return "an unknown process"
    text = f"pid {holder.get('pid', '?')} on host \"{holder.get('host', '?')}\""
    extra = ", ".join(x for x in (holder.get("what"), f"since {holder['started']}"
                                  if holder.get("started") else "") if x)
    return text + (f" ({extra})" if extra else "")


def pid_alive(pid) -> bool:
    """True if a process with this pid exists on this host (signal 0 probe)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    except OSError:
        return False
    return True


class RunLock:
    """The exclusive lock on one run folder. Use :func:`acquire` (or ``with acquire(...)``)."""

    def __init__(self, run_dir, what: str = ""):
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.what = what
        self.took_over: dict | None = None  # the stale holder replaced, if any
        self._fd: int | None = None
        self._depth = 0
        self._thread = threading.get_ident()

    # -- acquiring ---------------------------------------------------------------------------
    def _info(self) -> dict:
        return dict(pid=os.getpid(), host=socket.gethostname(), what=self.what,
                    started=_dt.datetime.now().isoformat(timespec="seconds"))

    def _refuse(self, holder: dict | None) -> None:
        where = "this" if (holder or {}).get("host") == socket.gethostname() else "that"
        raise RunLockedError(
            f"{self.run_dir} is in use: {describe(holder)} is training it; wait for it to finish "
            f"or stop it, or if no process on {where} host is training this run, delete "
            f"{self.path} and try again.", holder or {})

    def _acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            self._acquire_exclusive_create()
            return
        for _ in range(20):  # a holder unlinking its file between our open and flock: retry
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse(read_holder(self.run_dir))
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # we locked a file that its holder has just removed
                os.close(fd)
                continue
            previous = _read_fd(fd)
            if previous and previous.get("host") not in (None, socket.gethostname()):
                # written on another host: flock may not reach across a network file system
                os.close(fd)
                self._refuse(previous)
            if previous and previous.get("pid") is not None:
                self.took_over = previous  # its process is gone: flock would have failed otherwise
            _write_fd(fd, self._info())
            self._fd = fd
            return
        raise MatgenInputError(f"Could not lock {self.path} (it keeps changing); try again.")

    def _acquire_exclusive_create(self) -> None:  # pragma: no cover - Windows
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = read_holder(self.run_dir) or {}
                if holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid")):
                    self.took_over = holder
                    self.path.unlink(missing_ok=True)
                    continue
                self._refuse(holder)
            _write_fd(fd, self._info())
            self._fd = fd
            return
        self._refuse(read_holder(self.run_dir))

    # -- releasing ---------------------------------------------------------------------------
    def release(self) -> None:
        """Drop one level of the lock; the file is removed when the outermost level ends."""
        key = _key(self.run_dir)
        with _held_guard:
            self._depth -= 1
            if self._depth > 0:
                return
            _held.pop(key, None)
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)  # while still locked: nobody holds a stale copy
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _key(run_dir) -> str:
    return str(Path(run_dir).resolve())


def _read_fd(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _write_fd(fd: int, info: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(info).encode())
    os.fsync(fd)


def acquire(run_dir, what: str = "") -> RunLock:
    """Take the exclusive lock on ``run_dir`` (the folder is created if missing).

    Re-entrant for the thread that holds it (each call needs its own :meth:`RunLock.release`).
    ``what`` describes the holder for others' messages (e.g. "matgen train", "app session ab12").
    Raises :class:`RunLockedError` (a MatgenInputError) naming the holder when another process
    or thread holds it. A stale lock of a dead process is taken over: ``lock.took_over`` then
    holds the old holder's info, and the caller should say so.
    """
    key = _key(run_dir)
    with _held_guard:
        lock = _held.get(key)
        if lock is not None:
            if lock._thread == threading.get_ident():
                lock._depth += 1
                lock.took_over = None
                return lock
            raise RunLockedError(
                f"{run_dir} is in use: {describe(read_holder(run_dir))} is training it in this "
                f"process; stop that training first.", read_holder(run_dir) or {})
        lock = RunLock(run_dir, what)
        lock._acquire()
        lock._depth = 1
        _held[key] = lock
        return lock


def is_locked(run_dir) -> bool:
    """True when a live writer holds the run's lock (a stale file of a dead process is not)."""
    if _key(run_dir) in _held:
        return True
    path = lock_path(run_dir)
    if not path.exists():
        return False
    holder = read_holder(run_dir) or {}
    if fcntl is None:  # pragma: no cover
        return holder.get("host") != socket.gethostname() or pid_alive(holder.get("pid"))
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return holder.get("host") not in (None, socket.gethostname())
