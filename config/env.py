"""Read configuration from the environment.

Every secret may also be given as ``NAME_FILE`` pointing at a file that holds it (Docker and
Kubernetes secrets), which keeps secrets out of process listings and shell history.
"""

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigurationError(RuntimeError):
    pass


def env_str(name: str, default: str | None = None) -> str | None:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text(encoding="utf-8").strip()
    return os.environ.get(name, default)


def env_required(name: str) -> str:
    value = env_str(name)
    if not value:
        raise ConfigurationError(f"Environment variable {name} (or {name}_FILE) must be set.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"Environment variable {name} must be a boolean, got {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ConfigurationError(f"Environment variable {name} must be an integer.") from error


def env_list(name: str, default: list[str]) -> list[str]:
    """Comma-separated values; like every setting, from ``NAME_FILE`` where that is given."""
    raw = env_str(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]
