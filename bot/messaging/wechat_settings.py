"""WeChat Official Account settings (WECHAT_*), beside its adapter and light to import: the CLI
reads them before it knows whether WeChat (and wechatpy) is needed at all."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.settings_common import COMMON as _common


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
    # Pushes to a resident silent for more than 48 hours cannot go by customer-service message
    # (WeChat answers 45015): they go as this template message instead, the text in the field
    # named here (the template's {{content.DATA}}), opening `template_url` when tapped. One
    # template serves every push (notices, status changes, reminders, invitations): the
    # messages do not say which feature they come from. Unset, such a push fails (45015).
    notice_template_id: str | None = None
    template_field: str = "content"
    template_url: str | None = None
    template_max_chars: int = Field(default=200, ge=20)
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

    @field_validator("callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("WECHAT_CALLBACK_PATH must start with /")
        return value

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.app_secret and self.token)
