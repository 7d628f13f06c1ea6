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
        path = self.root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(rel)

    def named(self, name: str, make: Callable[[], bytes]) -> str:
        """The file `name` under the store's derived/ folder, made once by `make` (a drawing
        that never changes, e.g. a closed poll's chart); its path relative to the root."""
        rel = Path("derived") / name
        path = self.root / rel
        if not path.exists():
            data = make()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(rel)

    def path(self, rel: str) -> Path:
        return self.root / rel
