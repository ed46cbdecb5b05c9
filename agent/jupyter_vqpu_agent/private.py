"""Private files and directories: 0700 and 0600, whatever the process umask.

Bundles hold users' circuits and results, spools and logs say what ran; they live
on a scratch file system that every cluster user can list. A umask is a
process-wide setting the agent does not own (``vqpu up``, a test, a library, the
SLURM_UMASK Slurm propagates), so every place that writes under the work root or
a spool asks for its mode explicitly, and every job process starts with ``UMASK``
for whatever else it writes. Standard library only: the runner and the pilot
import this module too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The umask job processes (runner, warm worker, pilot, Slurm jobs) run with.
UMASK = 0o077


def make_dirs(path: Path | str) -> Path:
    """``mkdir -p`` in which every directory it creates is 0700.

    (``Path.mkdir(parents=True, mode=...)`` applies the mode to the last one only.)
    Directories that already exist keep their mode: the work root may be a site's."""
    path = Path(path)
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            if d.is_dir():  # a concurrent creator; it uses this function too
                continue
            raise
        os.chmod(d, DIR_MODE)  # mkdir's mode went through the umask
    return path


def open_private(path: Path | str, *, append: bool = False) -> BinaryIO:
    """Open ``path`` for writing as a 0600 file (an existing file is made 0600 too)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise



def write_atomic(path: Path | str, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` as a 0600 file, atomically: a reader sees all of it or nothing.

    Written to a hidden temporary beside it and renamed (a rename within a directory is
    atomic). ``durable`` fsyncs the data first, for records that must survive a crash of
    the machine (a bundle's files, its result); spool markers are signals between live
    processes and pass ``durable=False``. The one atomic write of the agent, the runner
    and the pilot."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open_private(tmp) as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
