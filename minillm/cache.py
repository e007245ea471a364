"""Where trained artifacts live, and how several processes share them safely.

Trained models are cached in folders named ``<name>-<key>``, where the key is a
hash of everything that decides the weights (``minillm.pipeline``). Two rules
make the cache safe when several notebook kernels start at once:

- **One trainer.** A caller takes an exclusive lock on ``<folder>.lock``
  first (``file_lock``); one process trains, the others wait and then load its
  result. The lock is ``fcntl.flock`` on Linux and macOS and
  ``msvcrt.locking`` on Windows; the OS drops it if the process dies, so a
  crashed run never leaves the cache locked.
- **No half folders.** Results are written to a temporary folder and renamed
  into place (``atomic_folder``): a folder that exists is complete.

Where: ``<repo>/.cache/`` (gitignored), or ``$MINILLM_CACHE``.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from minillm import ROOT


def cache_root() -> Path:
    """``$MINILLM_CACHE`` if that variable is set, else ``<repo>/.cache``."""
    return Path(os.environ.get("MINILLM_CACHE") or ROOT / ".cache")


@contextmanager
def file_lock(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (created if needed) across processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        try:
            import fcntl
        except ImportError:  # Windows: lock the file's first byte, retrying while another holds it
            import msvcrt

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def atomic_folder(folder: Path):
    """Yield a fresh temporary folder; on success rename it to ``folder``.

    On an exception the temporary folder is removed and ``folder`` untouched."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():  # an older copy (same key) loses to the new one
        shutil.rmtree(folder)
    os.replace(tmp, folder)
