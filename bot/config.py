"""Settings, one class per concern, read from the environment (and `.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.messaging.platforms import PLATFORMS
from bot.settings_common import COMMON

_common = COMMON


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(**_common)

    url: str = Field(
        default="sqlite+aiosqlite:///data/bot.sqlite3", validation_alias="DATABASE_URL"
    )
    echo: bool = Field(default=False, validation_alias="DATABASE_ECHO")


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOT_", **_common)

    default_language: str = "zh-Hans"
    media_dir: Path = Path("data/media")
    # The demo territory shipped in content/, found wherever the bot is started from.
    territory_file: Path = Path(__file__).resolve().parent.parent / "content/territory/demo.json"
    # Per-user flood guard: a burst of `flood_burst` messages, then `flood_rate` a second.
    flood_burst: int = 8
    flood_rate: float = 2.0
    # Redis shared by several workers for what each update checks before the database: the
    # flood guard's buckets (redis://127.0.0.1:6379/0). Without it each process keeps its own.
    redis_url: str | None = None
    timezone: str = "Asia/Shanghai"
    # Secret that signs button payloads; generated and stored in the database when unset.
    secret: SecretStr | None = None
    # Key rotation: the key that signed the buttons already out there stays valid for
    # `secret_grace_hours` after the first start that names it here, then it is refused.
    secret_previous: SecretStr | None = None
    secret_grace_hours: float = 72.0
    # Buttons that must be fresh: a vote, and a staff action (report cards, rosters), are
    # refused as expired this many hours after they were sent.
    fresh_vote_hours: float = 72.0
    fresh_staff_hours: float = 72.0
    # A conversation left unfinished this long is dropped, with a word, the next time the
    # person writes (a half-written notice must not wait forever to swallow their next message).
    draft_ttl_hours: float = Field(default=72.0, gt=0)
    # Processes serving the bot together (`python -m bot run --workers N` starts them; or
    # start N with the same settings). More than one needs PostgreSQL, and Telegram's webhook.
    workers: int = Field(default=1, ge=1, le=64)
    delivery_max_attempts: int = 6
    # Font for drawn images (charts, cards); the bundled WenQuanYi Micro Hei when unset.
    font_file: str | None = None
    # The web application (the Open311 API, later the staff dashboard): served by
    # `python -m bot run` when `web_url` (its public base URL) is set.
    web_url: str | None = None
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=8081, ge=0, le=65535)  # 0: any free port (tests)
    # The staff dashboard (web/dashboard): a browser session's length, and a sign-in link's.
    web_session_hours: float = Field(default=8.0, gt=0)
    web_login_minutes: float = Field(default=10.0, gt=0)


class Open311Settings(BaseSettings):
    """The Open311 GeoReport v2 API (web/open311.py), under BOT_WEB_URL/open311/v2/."""

    model_config = SettingsConfigDict(env_prefix="OPEN311_", **_common)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)  # a larger POST gets 413
    # Requests a minute per API key (and, for GETs without a key, per client address),
    # after a burst of `burst`; beyond that, 429.
    rate_per_minute: float = Field(default=60.0, gt=0)
    burst: int = Field(default=20, ge=1)
    page_size: int = Field(default=100, ge=1, le=1000)  # requests per page unless asked
    max_page_size: int = Field(default=1000, ge=1)
    default_days: int = Field(default=90, ge=1)  # GET requests without dates: the last 90 days


class VolunteeringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOLUNTEER_", **_common)

    # Reminders this many hours before a shift starts (the day before, and shortly before).
    reminder_hours: list[int] = [24, 2]
    # Volunteers may give up a confirmed place until this many hours before the start.
    cancel_cutoff_hours: float = 6.0
    # The check-in button works from this many minutes before the start until the end.
    checkin_early_minutes: int = 30


class ReportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPORT_", **_common)

    reference_prefix: str = "Z"
    max_photos: int = 3
    max_photo_bytes: int = 10 * 1024 * 1024
    max_voice_seconds: int = 300
    max_voice_bytes: int = 5 * 1024 * 1024
    max_description: int = 1000
    stats_days: int = 30  # /stats period when none is given
    categories_file: Path | None = None  # default: content/reports/categories.toml
    holidays_file: Path | None = None  # default: content/reports/holidays.toml


class WeatherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEATHER_", **_common)

    # Anything speaking Open-Meteo's /v1/forecast, e.g. https://api.open-meteo.com; unset, no
    # morning forecast is sent (so a test or a fresh install never calls out by surprise).
    base_url: str | None = None
    send_at: str = "07:00"  # local time (settings.bot.timezone) of the morning forecast
    give_up_at: str = "11:00"  # a forecast not fetched by then is dropped for the day
    retry_minutes: float = 10.0
    timeout_seconds: float = 15.0
    # A warning instead of a plain forecast (China Meteorological Administration thresholds:
    # 25 mm a day is heavy rain, 35 °C a high-temperature day).
    heavy_rain_mm: float = 25.0
    heat_celsius: float = 35.0

    @field_validator("send_at", "give_up_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.strip().partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("expected a local time as HH:MM, e.g. 07:00")
        return value.strip()

    @model_validator(mode="after")
    def _send_before_give_up(self):
        def minutes(text: str) -> int:
            hours, _, mins = text.partition(":")
            return int(hours) * 60 + int(mins)

        if minutes(self.send_at) >= minutes(self.give_up_at):
            raise ValueError(
                f"WEATHER_SEND_AT={self.send_at} is not before WEATHER_GIVE_UP_AT="
                f"{self.give_up_at}: the forecast would never be sent; set the give-up time "
                "later than the send time")
        return self


class CapSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAP_", **_common)

    feed_url: str | None = None  # an Atom/RSS feed of CAP entries, or one CAP document
    folder: Path | None = None  # or a folder where CAP files are dropped
    # How often the feed or folder is read; at least 10 s, so a national
    # feed can be polled every 30 s without hammering it.
    poll_seconds: float = Field(default=300.0, ge=10.0)
    timeout_seconds: float = 15.0
    max_bytes: int = 1_000_000  # larger documents are refused unread
    max_entries: int = 50  # CAP documents fetched per feed poll
    # When set (a JSON list of CAP <sender> ids), alerts from any other sender are logged and
    # dropped, e.g. CAP_TRUSTED_SENDERS='["cdqx@cma.gov.cn"]'.
    trusted_senders: list[str] = Field(default_factory=list)
    # PEM certificates whose keys may sign CAP documents (XML signature, verified with signxml);
    # a signed document that none of them verifies is dropped. CAP_REQUIRE_SIGNATURE=true also
    # drops unsigned ones (and alerts embedded in a feed, which are not checked).
    trusted_certs: list[Path] = Field(default_factory=list)
    require_signature: bool = False


class OutboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOX_", **_common)

    # Finished messages (sent, failed, unreachable, cancelled) are deleted after this many
    # days, in batches; a notice's figures are kept apart and stay.
    keep_days: float = Field(default=30.0, gt=0)
    prune_batch: int = Field(default=5000, ge=100)


class NoticeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTICES_", **_common)

    # Recipients queued per fan-out transaction (one cursor step); bigger is faster, smaller
    # keeps each transaction short.
    fanout_batch: int = 500


class DeliberationSettings(BaseSettings):
    """Polls, surveys and the council's agenda."""

    model_config = SettingsConfigDict(env_prefix="POLLS_", **_common)

    # Residents reached per fan-out step (invitations, results); each step is one transaction.
    fanout_batch: int = 500
    # Anonymous ballots are counted in groups of at least this many (the rest at close): the
    # smallest set of voters a counted ballot hides among. See the README's privacy section.
    anonymity_batch: int = Field(default=10, ge=2)
    # Seals anonymous ballots while they wait to be counted; kept outside the database. Unset:
    # read from (or, the first time, written to) `ballot_key_file`, by default `ballot.key`
    # beside BOT_MEDIA_DIR. Every bot process must use the same one.
    ballot_key: SecretStr | None = None
    ballot_key_file: Path | None = None
    # Supporters a proposal needs to reach the council's agenda; per committee code overrides,
    # e.g. POLLS_PROPOSAL_THRESHOLDS='{"zhonghai": 30}'.
    proposal_threshold: int = 20
    proposal_thresholds: dict[str, int] = Field(default_factory=dict)
    # Only verified residents may propose and support.
    proposals_verified_only: bool = True


class Settings:
    """All settings of one process, built once by the composition root."""

    def __init__(self, **overrides) -> None:
        self.database = overrides.pop("database", None) or DatabaseSettings()
        # Each platform's settings live beside its adapter and are named by its registration.
        for platform in PLATFORMS:
            for name, cls in platform.settings:
                setattr(self, name, overrides.pop(name, None) or cls())
        self.bot = overrides.pop("bot", None) or BotSettings()
        self.volunteering = overrides.pop("volunteering", None) or VolunteeringSettings()
        self.reports = overrides.pop("reports", None) or ReportSettings()
        self.notices = overrides.pop("notices", None) or NoticeSettings()
        self.outbox = overrides.pop("outbox", None) or OutboxSettings()
        self.weather = overrides.pop("weather", None) or WeatherSettings()
        self.cap = overrides.pop("cap", None) or CapSettings()
        self.polls = overrides.pop("polls", None) or DeliberationSettings()
        self.open311 = overrides.pop("open311", None) or Open311Settings()
        if overrides:
            raise TypeError(f"unknown settings: {sorted(overrides)}")
