"""What every settings class shares: the environment first, then `.env`; unknown keys ignored."""

COMMON = {"env_file": ".env", "extra": "ignore"}
