"""Media kept on disk under a configurable directory, named by content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(self, data: bytes, suffix: str) -> str:
        """Store `data`; returns its path relative to the store's root."""
        digest = hashlib.sha256(data).hexdigest()
        rel = Path(digest[:2]) / f"{digest}{suffix}"
        _write_once(self.root / rel, lambda: data)
        return str(rel)

    def named(self, name: str, make: Callable[[], bytes]) -> str:
        """The file `name` under the store's derived/ folder, made once by `make` (a drawing
        that never changes, e.g. a closed poll's chart); its path relative to the root."""
        rel = Path("derived") / name
        _write_once(self.root / rel, make)
        return str(rel)

    def path(self, rel: str) -> Path:
        return self.root / rel


def _write_once(path: Path, make: Callable[[], bytes]) -> None:
    """Write the file unless it is there; readers see it whole or not at all (written beside,
    then renamed; the temporary name is this process's, so two workers never share it)."""
    if path.exists():
        return
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
