"""Settings: one pydantic-settings class, read from the environment (``CHAINAUDIT_*``).

Settings are built by the entry points (CLI, server) and passed down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Deployment settings. Every field can be set as ``CHAINAUDIT_<FIELD>`` in the environment.

    ``data_dir`` holds the SQLite log (``log.sqlite``) and the service's state files.
    """

    model_config = SettingsConfigDict(env_prefix="CHAINAUDIT_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path(".data"), description="where the log and state live")
    record_kinds: frozenset[str] = Field(
        default=frozenset(), description="record kinds accepted beyond the built-in ones"
    )
