"""What comes from outside the CLI (a file, the app, ARR): parsed within bounds, and shown harmless.

- :func:`parse_json` reads JSON nested at most :data:`MAX_DEPTH` levels (``arrconfig.json`` has 2, the app's
  deepest answer 4): a deeper text is a ValueError saying so, never a RecursionError, and nothing deeper is ever
  printed or walked.
- :func:`printable` shows every control character as an escape, so that no text from a service can move the
  cursor, set the terminal's title, clear the screen or reorder what is shown: C0 controls, DEL and C1 controls
  as ``\\x1b`` (``\\n``, ``\\r`` and ``\\t`` as such), bidirectional overrides and isolates and the line and
  paragraph separators as ``\\u202e``. :func:`json_printable` does the same to JSON text with JSON's own escapes,
  so that ``--json`` still says exactly what the service said.
- :func:`clip` shortens a service's message to what a person reads (a problem's title can be 16 MiB long).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
MAX_SAID_CHARS = 500

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]  # C0, DEL, C1
# Bidirectional marks, embeddings, overrides and isolates (Trojan Source), and the line and paragraph separators.
_FORMATS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
_ESCAPES = {code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in _CONTROLS} | {
    code: f"\\u{code:04x}" for code in _FORMATS}
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in [0x7F, *range(0x80, 0xA0), *_FORMATS]}  # json.dumps does C0


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with each control character escaped (those in ``keep`` left alone: our own messages' newlines)."""
    table = _ESCAPES if not keep else {code: escape for code, escape in _ESCAPES.items() if chr(code) not in keep}
    return text.translate(table)


def json_printable(text: str) -> str:
    """JSON text (as ``json.dumps`` writes it, C0 already escaped) with DEL, C1 and the bidirectional and separator
    characters as ``\\uXXXX`` too: the same JSON value, nothing raw on a terminal."""
    return text.translate(_JSON_ESCAPES)


def clip(text: str, limit: int = MAX_SAID_CHARS) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def said(value: object, limit: int = MAX_SAID_CHARS) -> str:
    """What a service said in a field, to put in a message: clipped and escaped; "" for None."""
    return "" if value is None else printable(clip(str(value), limit))


def parse_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` as JSON, nested at most ``max_depth`` levels; ValueError saying what is wrong otherwise."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # json's own limit (about 1000 levels) came first
        raise ValueError(f"nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # a number of more than 4300 digits, and the like
        raise ValueError(f"not JSON: {clip(str(exc), 100)}") from None
    if depth(value, max_depth) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    return value


def depth(value: Any, limit: int) -> int:
    """How many arrays and objects ``value`` nests (without recursion); counting stops past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    if not isinstance(value, (dict, list)):
        return 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            break
        stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
                     if isinstance(child, (dict, list)))
    return deepest
