"""The key that seals anonymous ballots while they wait to be counted (storage/polls.py).

It must not live in the database: whoever holds a copy of the database alone should not read
waiting ballots. POLLS_BALLOT_KEY gives it (any string; its SHA-256 is the key); otherwise it is
read from POLLS_BALLOT_KEY_FILE (default: `ballot.key` beside BOT_MEDIA_DIR), created with 32
random bytes, readable by the owner only, the first time. Losing or changing it leaves ballots
that were waiting at that moment uncounted.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path


def ballot_key(settings) -> bytes:
    polls = settings.polls
    if polls.ballot_key is not None:
        return hashlib.sha256(polls.ballot_key.get_secret_value().encode()).digest()
    path = Path(polls.ballot_key_file or Path(settings.bot.media_dir).parent / "ballot.key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process wrote it first
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
    for _ in range(50):  # a process that created the file a moment ago may still be writing
        text = path.read_text().strip()
        if len(text) >= 32:
            return hashlib.sha256(text.encode()).digest()
        time.sleep(0.1)
    raise ValueError(f"{path}: the ballot key file is empty or too short")
