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

Shipped models. The book also ships the trained models of its default recipes
in ``data/zoo/<name>-<key>/`` (a few MB each), so that a reader in Colab or a
CI run loads them in a second instead of training for minutes. They are found
by the same name and key, so a shipped folder is used only while the code and
data that made it are unchanged; each file is checked against the SHA-256 in
``data/zoo/manifest.json`` before use (``shipped_folder``), and
``python -m minillm.pipeline --ship NAME`` writes one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from minillm import DATA_DIR, ROOT

#: Where the book's trained models are shipped, and their checksums.
SHIPPED_DIR = DATA_DIR / "zoo"
SHIPPED_FILES = ("model.safetensors", "history.json", "recipe.json")
#: Shipped too when present: the report card's metrics (``minillm.report``).
OPTIONAL_FILES = ("evals.json",)


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_folder(folder_name: str) -> Path | None:
    """The shipped copy of a trained model (``data/zoo/<name>-<key>``), or None.

    Raises ValueError if the folder is listed but a file's checksum does not
    match the manifest: a corrupted or hand-edited shipped model must not be
    loaded silently."""
    folder = SHIPPED_DIR / folder_name
    manifest_path = SHIPPED_DIR / "manifest.json"
    if not (folder / "model.safetensors").exists() or not manifest_path.exists():
        return None
    listed = json.loads(manifest_path.read_text()).get(folder_name)
    if listed is None:
        return None
    for name in (*SHIPPED_FILES, *(n for n in OPTIONAL_FILES if n in listed)):
        if _sha256(folder / name) != listed.get(name):
            raise ValueError(f"shipped model {folder / name} does not match its checksum in "
                             f"{manifest_path}: delete the folder (it will be retrained) or "
                             f"re-ship it with `python -m minillm.pipeline --ship`")
    return folder


def ship(folder: Path) -> Path:
    """Copy a trained model's folder into ``data/zoo/`` and record its checksums
    (``folder`` may be the shipped folder itself: then only the checksums are
    recorded again, e.g. after adding its ``evals.json``)."""
    target = SHIPPED_DIR / folder.name
    target.mkdir(parents=True, exist_ok=True)
    names = [*SHIPPED_FILES, *(n for n in OPTIONAL_FILES if (folder / n).exists())]
    for name in names:
        if (folder / name).resolve() != (target / name).resolve():
            shutil.copyfile(folder / name, target / name)
    manifest_path = SHIPPED_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[folder.name] = {name: _sha256(target / name) for name in names}
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    return target
