"""Button payloads signed for the one person they were sent to.

A payload is `action:arg:arg~sig`; the signature covers the recipient's identity, so a payload
copied, forged or replayed by someone else is refused before any handler sees it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from bot.messaging.model import CALLBACK_LIMIT

SIG_LEN = 8


class PayloadTooLong(ValueError):
    pass


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sig(self, identity_id: int, body: str) -> str:
        mac = hmac.new(self._secret, f"{identity_id}|{body}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode()[:SIG_LEN]

    def sign(self, identity_id: int, action: str, *args: object) -> str:
        body = ":".join([action, *(str(a) for a in args)])
        payload = f"{body}~{self._sig(identity_id, body)}"
        if len(payload.encode()) > CALLBACK_LIMIT:
            raise PayloadTooLong(payload)
        return payload

    def verify(self, identity_id: int, payload: str | None) -> tuple[str, list[str]] | None:
        """(action, args) when the payload is genuine for this identity, else None."""
        if not payload or "~" not in payload or len(payload.encode()) > CALLBACK_LIMIT:
            return None
        body, _, sig = payload.rpartition("~")
        if not hmac.compare_digest(sig, self._sig(identity_id, body)):
            return None
        action, *args = body.split(":")
        return action, args
