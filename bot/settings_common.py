"""What every settings class shares: the environment first, then `.env`; unknown keys ignored."""

from pydantic_settings import SettingsConfigDict

COMMON = SettingsConfigDict(env_file=".env", extra="ignore")
