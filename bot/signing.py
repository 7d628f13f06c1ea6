"""Button payloads signed for the one person they were sent to.

A payload is `action:arg:arg~sig`; the signature covers the recipient's identity, so a payload
copied, forged or replayed by someone else is refused before any handler sees it.

Actions that must be fresh (a vote, a staff action on a report card) also carry the moment they
were signed, `action:arg~ts~sig` (`ts` in seconds, base 36, inside the signature): older than
their age limit, they are refused as expired. The key can be rotated: payloads signed with the
previous key are accepted until the grace period ends, then only the current key counts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from bot.messaging.model import CALLBACK_LIMIT
from bot.payloads import Action

SIG_LEN = 8
# What verify() returns for a genuine payload that is too old: (EXPIRED, [the action]). It
# contains "~", so no signed payload can ever name it; the router answers it with a message.
EXPIRED = "~expired"


class PayloadTooLong(ValueError):
    pass


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def fingerprint(secret: bytes) -> str:
    """A short, non-reversible name for a key (to remember when its rotation began)."""
    return hashlib.sha256(b"fingerprint|" + secret).hexdigest()[:16]


class Signer:
    def __init__(self, secret: bytes, *, previous: bytes | None = None,
                 previous_until: datetime | None = None,
                 fresh: Mapping[str, timedelta] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        if not secret:
            raise ValueError("the signing key is empty")
        self._secret = secret
        self._previous = previous if previous and previous != secret else None
        self._previous_until = previous_until
        self.fresh = dict(fresh or {})
        self._clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def _mac(secret: bytes, identity_id: int, body: str) -> str:
        mac = hmac.new(secret, f"{identity_id}|{body}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode()[:SIG_LEN]

    def _sig(self, identity_id: int, body: str) -> str:
        return self._mac(self._secret, identity_id, body)

    def _keys(self) -> list[bytes]:
        keys = [self._secret]
        if self._previous is not None and (
                self._previous_until is None or self._clock() < self._previous_until):
            keys.append(self._previous)
        return keys

    def tag(self, purpose: str, text: str) -> str:
        """A MAC of `text` for one purpose (e.g. a sign-in link's token), with the current key;
        `check` takes it with the previous key too while that is still accepted."""
        return self._tag(self._secret, purpose, text)

    def check(self, purpose: str, text: str, tag: str) -> bool:
        return any(hmac.compare_digest(tag, self._tag(key, purpose, text))
                   for key in self._keys())

    @staticmethod
    def _tag(secret: bytes, purpose: str, text: str) -> str:
        mac = hmac.new(secret, f"{purpose}\x00{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode()[:22]  # 132 bits

    def sign(self, identity_id: int, action: str | Action, *args: object) -> str:
        """The payload of a typed action (bot/payloads.py), or of an action code and its
        arguments, signed for this identity."""
        if isinstance(action, Action):
            if args:
                raise TypeError("a typed action carries its own fields")
            code, args = action.code, tuple(action.pack())
        else:
            code = action
        body = ":".join([code, *(str(a) for a in args)])
        if "~" in body:
            raise ValueError(f"a payload may not contain '~': {body!r}")
        if code in self.fresh:
            body = f"{body}~{_b36(int(self._clock().timestamp()))}"
        payload = f"{body}~{self._sig(identity_id, body)}"
        if len(payload.encode()) > CALLBACK_LIMIT:
            raise PayloadTooLong(payload)
        return payload

    def verify(self, identity_id: int, payload: str | None) -> tuple[str, list[str]] | None:
        """(action, args) when the payload is genuine for this identity, else None; a genuine
        payload of a fresh action past its age limit gives (EXPIRED, [action])."""
        if not payload or "~" not in payload or len(payload.encode()) > CALLBACK_LIMIT:
            return None
        body, _, sig = payload.rpartition("~")
        if not any(hmac.compare_digest(sig, self._mac(key, identity_id, body))
                   for key in self._keys()):
            return None
        core, _, stamp = body.partition("~")
        action, *args = core.split(":")
        limit = self.fresh.get(action)
        if limit is not None:
            try:
                signed_at = datetime.fromtimestamp(int(stamp, 36), UTC)
            except (ValueError, OverflowError, OSError):
                # Signed before this action had to be fresh: as old as it gets.
                return EXPIRED, [action]
            if not timedelta(minutes=-5) <= self._clock() - signed_at <= limit:
                return EXPIRED, [action]
        return action, args
