"""WeChat Official Account settings (WECHAT_*), beside its adapter and light to import: the CLI
reads them before it knows whether WeChat (and wechatpy) is needed at all."""

from __future__ import annotations

import base64
import binascii
import re

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.messaging.model import PUSH_FACTS, PushKind
from bot.settings_common import COMMON as _common

# The types of a template field (its key's prefix: thing1, character_string2, time3), as
# WeChat's template library names them.
FIELD_TYPES = ("thing", "character_string", "phrase", "time", "date", "number", "letter",
               "name", "amount", "phone_number", "car_number", "const", "short_thing")
_KEY = re.compile(r"^([a-z_]+?)(\d+)$")


def field_type(key: str) -> str | None:
    """thing1 -> thing; None for a key of no known type."""
    found = _KEY.match(key)
    return found.group(1) if found and found.group(1) in FIELD_TYPES else None


def template_fields(kind: PushKind, spec: str) -> tuple[tuple[str, str], ...]:
    """`thing1=title,time2=time` as ((key, fact), ...), checked against the kind's facts."""
    fields = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, fact = (x.strip() for x in part.partition("="))
        if not sep or field_type(key) is None:
            raise ValueError(f"{part!r}: a field is key=fact, the key a WeChat field "
                             f"(thing1, character_string2, time3 ...)")
        if fact not in PUSH_FACTS[kind]:
            raise ValueError(f"{part!r}: {kind.value} pushes have the facts "
                             f"{', '.join(PUSH_FACTS[kind])}")
        fields.append((key, fact))
    if not fields:
        raise ValueError(f"the {kind.value} template needs at least one field")
    return tuple(fields)


class WeChatSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WECHAT_", **_common)

    # From the admin console (mp.weixin.qq.com → 设置与开发 → 基本配置): the AppID, the
    # AppSecret, the Token typed in the server configuration and, for 安全模式 (safe mode),
    # the EncodingAESKey. App id, secret and token together turn the platform on.
    app_id: str | None = None
    app_secret: SecretStr | None = None
    token: SecretStr | None = None
    aes_key: SecretStr | None = None
    # Where WeChat posts the callbacks: the console's 服务器地址(URL) is https://HOST/wechat
    # (a reverse proxy in front terminates TLS and forwards here).
    callback_host: str = "0.0.0.0"
    callback_port: int = 8082
    callback_path: str = "/wechat"
    # Callbacks signed longer ago than this are refused (a replay of an old, signed request).
    callback_max_age_seconds: float = Field(default=3600.0, gt=0)
    api_base: str = "https://api.weixin.qq.com"  # another API server (the tests' fake)
    # Pushes to a resident silent for more than 48 hours (WeChat answers 45015), or sent more
    # customer-service messages than WeChat allows without an answer (45047), go as a template
    # message instead: one template per kind of push, its id from the console (广告与服务 →
    # 模板消息) and its fields filled with the push's facts, `key=fact,...` (a field's key is
    # the template's {{key.DATA}}; its type prefix, thing / character_string / phrase / time
    # ..., says how the value is cut and written). Facts: notice title, text, time; report
    # status ref, category, status, time, note; reminder title, time; poll title,
    # deadline. A push of a kind without a template id (and a push of no kind) cannot reach
    # such a resident: its outbox row is marked unreachable, with the reason, and the rest
    # still goes. A tapped template opens `template_url` when set.
    notice_template_id: str | None = None
    notice_template_fields: str = "thing1=title,thing2=text,time3=time"
    report_status_template_id: str | None = None
    report_status_template_fields: str = (
        "character_string1=ref,thing2=category,thing3=status,time4=time")
    reminder_template_id: str | None = None
    reminder_template_fields: str = "thing1=title,time2=time"
    poll_template_id: str | None = None
    poll_template_fields: str = "thing1=title,time2=deadline"
    template_url: str | None = None
    # The budget the deliverer keeps to: WeChat documents daily call quotas per API (45009 when
    # spent) rather than a rate, and answers -1 "system busy" to bursts.
    per_second: float = Field(default=20.0, gt=0)
    per_chat_per_second: float = Field(default=2.0, gt=0)
    # WeChat's location messages are in GCJ-02 (China's offset datum); the territory is WGS-84.
    location_gcj02: bool = True

    @field_validator("aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        raw = value.get_secret_value()
        try:
            key = base64.b64decode(raw + "=", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(raw) != 43 or len(key) != 32:
            raise ValueError("WECHAT_AES_KEY must be the 43-character EncodingAESKey from the "
                             "admin console")
        return value

    @field_validator("notice_template_fields", "report_status_template_fields",
                     "reminder_template_fields", "poll_template_fields")
    @classmethod
    def _fields(cls, value: str, info: ValidationInfo) -> str:
        kind = PushKind((info.field_name or "").removesuffix("_template_fields"))
        template_fields(kind, value)  # raises ValueError, naming what is wrong
        return value

    def templates(self) -> dict[PushKind, tuple[str, tuple[tuple[str, str], ...]]]:
        """The template of each kind of push that has one: its id and (key, fact) fields."""
        found = {}
        for kind in PushKind:
            template_id = getattr(self, f"{kind.value}_template_id")
            if template_id:
                found[kind] = (template_id, template_fields(
                    kind, getattr(self, f"{kind.value}_template_fields")))
        return found

    @field_validator("callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("WECHAT_CALLBACK_PATH must start with /")
        return value

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.app_secret and self.token)
