"""``local.settings.json`` as Core Tools reads it: its ``Values`` become environment variables."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_local_settings(path: str | Path = "local.settings.json", *, override: bool = False) -> dict[str, str]:
    """Put the file's ``Values`` into ``os.environ`` (variables already set win unless ``override``); returns them.

    A missing file is not an error: settings may come from the environment alone.
    """
    path = Path(path)
    if not path.exists():
        return {}
    values = {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8-sig")).get("Values", {}).items()}
    for key, value in values.items():
        if override or key not in os.environ:
            os.environ[key] = value
    return values
