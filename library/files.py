"""The library on disk: hashing, placing a file under a second name, and `scan()`,
which brings the database in line with what is in the folders."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError

from library.folders import FOLDERS
from library.models import ModelFile, library_root
from library.validation import validate_filename

logger = logging.getLogger(__name__)

BLOCK = 4 * 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


class PrefixHasher:
    """The sha256 of a file's first bytes, extended as more of them become final.

    A download hashes the part of its .part that no request will write again
    while the rest still arrives, so verifying the finished file costs only its
    tail. `advance()` runs on a worker thread (hashlib and pread release the GIL);
    calls are serialised.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self._digest = hashlib.sha256()
        self._lock = threading.Lock()

    def advance(self, upto: int | None, stop: Callable[[], bool] | None = None) -> int:
        """Hash on to byte `upto` (None: to the end of the file); returns the position."""
        with self._lock:
            while upto is None or self.position < upto:
                wanted = BLOCK if upto is None else min(BLOCK, upto - self.position)
                block = os.pread(self.fd, wanted, self.position)
                if not block:
                    break
                self._digest.update(block)
                self.position += len(block)
                if stop is not None and stop():
                    raise InterruptedError("hashing stopped")
            return self.position

    def hexdigest(self) -> str:
        with self._lock:
            return self._digest.hexdigest()


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def place_copy(source: Path, target: Path) -> bool:
    """Make `target` hold `source`'s bytes: a hard link (True), else a copy renamed into
    place (False). Never overwrites: FileExistsError if `target` exists."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        return True
    except FileExistsError:
        raise
    except OSError:  # another file system, or links not supported: copy
        pass
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.copy")
    try:
        shutil.copyfile(source, temporary)
        if target.exists():
            raise FileExistsError(target)
        os.replace(temporary, target)
    finally:
        remove_quietly(temporary)
    return False


def replace_with_link(source: Path, target: Path) -> bool:
    """Make `target` (which exists) a hard link to `source`, in one rename; False, and
    `target` untouched, where links cannot be made (another file system)."""
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.link")
    try:
        os.link(source, temporary)
        os.replace(temporary, target)
    except OSError:
        remove_quietly(temporary)
        return False
    return True


@dataclass(frozen=True)
class ScanResult:
    added: list[ModelFile]
    removed: int


def is_library_name(name: str) -> bool:
    """Hidden files, unfinished downloads (.part) and odd names are not library files."""
    try:
        validate_filename(name)
    except ValidationError:
        return False
    return True


def _library_files(folder: Path):
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if is_library_name(entry.name) and entry.is_file():
            yield entry


def scan(*, hash_new: bool = True) -> ScanResult:
    """Record files in the library folders that have no row (hashing them unless told
    not to) and drop rows whose file is gone. Subfolders are not looked into."""
    root = library_root()
    added: list[ModelFile] = []
    removed = 0
    for folder in FOLDERS:
        known = {m.filename: m for m in ModelFile.objects.filter(folder=folder)}
        present = set()
        for entry in _library_files(root / folder):
            present.add(entry.name)
            if entry.name in known:
                continue
            sha = sha256_of(Path(entry.path)) if hash_new else ""
            model_file, created = ModelFile.objects.get_or_create(
                folder=folder,
                filename=entry.name,
                defaults={"size": entry.stat().st_size, "sha256": sha},
            )
            if created:
                added.append(model_file)
        gone = [m.pk for name, m in known.items() if name not in present]
        if gone:
            removed += ModelFile.objects.filter(pk__in=gone).delete()[0]
    if added or removed:
        logger.info("library scan: %d file(s) added, %d gone", len(added), removed)
    return ScanResult(added, removed)
