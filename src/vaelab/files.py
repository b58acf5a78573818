"""Writing files safely: atomically, never through a symbolic link, and under a lock.

Every file vaelab writes goes through `atomic_write`: the bytes go to a hidden
temporary file in the same folder (`.NAME.RANDOM.tmp`), are flushed to disk and
renamed over the target, so readers see the old file or the new one, never half
of one. The rename replaces a symbolic link planted at the target instead of
writing through it, and inside a run (`root=RUN`) every folder between the run
and the file is opened without following links, so a planted `figures -> /etc`
is refused instead of followed.

A writer holds an advisory lock (`flock`) on its temporary file while it writes.
A temporary file nobody holds a lock on was left by a process killed mid-write,
and `remove_leftovers` deletes it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError

try:  # POSIX; on other systems the locks below are no-ops
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.tmp$")


def atomic_write(path: str | Path, data: bytes, *, root: str | Path | None = None) -> Path:
    """Replace `path` with `data`: readers see the old or the new file, never a mix.

    With `root` (a run folder), `path` must lie inside it, and every folder from
    `root` down to the file is created if missing and must be a real folder, not
    a symbolic link. A failure (a full disk, a read-only folder) leaves the old
    file as it was and becomes a VaelabError naming the file.
    """
    path = Path(path)
    try:
        dir_fd = _open_parent(path, root)
        try:
            _replace_at(dir_fd, path.name, data)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise VaelabError(
            f"cannot write {display(path)}: {exc.strerror or exc}; the previous version of the file is "
            "intact. Free some space or fix the folder's permissions, then run the command again"
        ) from None
    return path


def write_json(path: str | Path, obj: Any, *, root: str | Path | None = None) -> Path:
    """Write strict JSON (no NaN or Infinity, which other tools cannot read) atomically."""
    return atomic_write(path, (dumps(obj, indent=2) + "\n").encode(), root=root)


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps that refuses NaN and Infinity, naming the first offending key."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        where = _first_non_finite(obj)
        raise VaelabError(f"refusing to write a non-finite number ({where}): the values are not valid") from None


def _first_non_finite(obj: Any, where: str = "value") -> str:
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where} = {obj}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{where}[{key!r}]" if where != "value" else repr(key))
        if found:
            return found
    return ""


def display(path: str | Path) -> str:
    """A path as text that can always be printed or put in a page, whatever bytes it holds.

    Names that are not valid UTF-8 arrive in Python with surrogate escapes; they
    are shown with the replacement character instead of breaking the output.
    """
    return os.fsencode(str(path)).decode("utf-8", errors="replace")


def _open_parent(path: Path, root: str | Path | None) -> int:
    """A descriptor of the folder that will hold `path`, with no link followed below `root`."""
    if root is None:
        return os.open(path.parent, os.O_RDONLY | _DIRECTORY)
    root = Path(root)
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        raise VaelabError(f"{display(path)} is not inside {display(root)}; vaelab writes only inside the run") from None
    fd = os.open(root, os.O_RDONLY | _DIRECTORY)
    for part in parts:
        try:
            try:
                os.mkdir(part, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise planted(root.joinpath(*parts[: parts.index(part) + 1]), "a folder") from None
            raise
        os.close(fd)
        fd = child
    return fd


def planted(where: Path, expected: str) -> VaelabError:
    """The error for something someone else put where vaelab keeps `expected` (a folder, a lock file)."""
    what = "a symbolic link" if where.is_symlink() else f"not {expected}"
    return VaelabError(f"{display(where)} is {what}; vaelab writes only into its own files and real folders, "
                       f"never through a link it did not make. Move it away (e.g. `mv {display(where)} "
                       f"{display(where)}.old`) and run the command again")


def _replace_at(dir_fd: int, name: str, data: bytes) -> None:
    """Write `data` to a locked temporary file in `dir_fd`, then rename it over `name`."""
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666, dir_fd=dir_fd)
    try:
        try:
            _lock(fd, exclusive=True, wait=True)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # replaces a link, never follows it
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    os.fsync(dir_fd)  # make the rename itself durable
    _remove_leftovers_of(dir_fd, name)


LEFTOVER_AGE = 60.0  # seconds: a temporary file younger than this may belong to a writer about to lock it


def _remove_leftovers_of(dir_fd: int, name: str) -> None:
    """Delete the temporary files of `name` in `dir_fd` that writers killed mid-write left (unlocked, and
    older than LEFTOVER_AGE): each write of a file clears what an earlier, killed write of it left."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return
    for other in names:
        found = _TEMP.match(other)
        if found is not None and found["name"] == name:
            _unlink_if_abandoned(other, dir_fd=dir_fd, older_than=LEFTOVER_AGE)


def _unlink_if_abandoned(path: str | Path, *, dir_fd: int | None = None, older_than: float = 0.0) -> bool:
    """Delete the temporary file `path` (relative to `dir_fd`, if given) if no writer lives for it
    (`_abandoned`) and it is older than `older_than` seconds; whether it was deleted."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        if time.time() - os.fstat(fd).st_mtime > older_than and _abandoned(fd):
            os.unlink(path, dir_fd=dir_fd)
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


JUST_MADE = 2.0  # seconds: an empty temporary file this young may be a writer's that has not locked it yet


def _abandoned(fd: int) -> bool:
    """Whether the temporary file open at `fd` has no live writer: nobody holds its lock, and it is not an
    empty file made in the last JUST_MADE seconds (a writer creates its file, then locks it)."""
    st = os.fstat(fd)
    if st.st_size == 0 and time.time() - st.st_mtime < JUST_MADE:
        return False
    return _lock(fd, exclusive=True, wait=False)


def is_leftover(name: str) -> bool:
    """Whether `name` is one of `atomic_write`'s temporary files."""
    return _TEMP.match(name) is not None


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete temporary files that killed writers left in `folder`; return them.

    A temporary file whose lock can be taken has no live writer. Files another
    process is still writing are left alone.
    """
    folder = Path(folder)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if is_leftover(name) and _unlink_if_abandoned(folder / name):
            removed.append(folder / name)
    return removed


def _lock(fd: int, *, exclusive: bool, wait: bool) -> bool:
    """Take an advisory lock on `fd`; False if `wait` is off and someone else holds it."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, flags)
    except BlockingIOError:
        return False
    return True


def lock_holder(path: str | Path) -> int | None:
    """The pid of the process holding a lock (`flock`) on the file `path`, or None if nobody does.

    Read from /proc/locks, without touching the lock, so asking never makes another process's attempt
    to take it fail. 0: held, by a process this one cannot see (another pid namespace). Always None
    where the system has no /proc/locks (macOS, Windows).
    """
    try:
        st = os.stat(path, follow_symlinks=False)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():  # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:5407997 0 EOF"; "1: -> FLOCK ..." waits
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file:
            try:
                return max(int(fields[4]), 0)
            except ValueError:
                return 0
    return None


@contextmanager
def exclusive_lock(path: str | Path) -> Iterator[bool]:
    """Hold an exclusive lock on the file `path` (created if missing) while the block runs.

    Yields False at once, without waiting, if another process holds it. The lock
    file is never deleted (deleting it would let two processes lock two different
    files of the same name); it is released when the block ends or the process dies.
    """
    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR):  # a link or a folder planted where the lock file goes
                raise planted(path, "a lock file") from None
            raise
        if not _lock(fd, exclusive=True, wait=False):
            os.close(fd)
            yield False
            return
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was replaced between open and lock: lock the new one
    try:
        yield True
    finally:
        os.close(fd)
