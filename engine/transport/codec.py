"""JSON codec for python-socketio / python-engineio packets: orjson, stdlib semantics.

``socketio.AsyncServer(json=codec)`` takes a module-like object with ``dumps`` and ``loads``.
orjson encodes and decodes several times faster than the standard library; every case where the
two would disagree falls back to the standard library, so decoded values are exactly what
``json.loads`` returns:

- ``loads``: text that orjson refuses (lone surrogates, numbers out of double range, ...) and
  text holding a run of 19 or more digits (orjson turns integers beyond 64 bits into floats) are
  decoded by ``json.loads``. ``NaN``/``Infinity`` are refused in both paths (they are not JSON:
  socket.io-client never sends them, and the payload prescan refuses them too).
- ``dumps``: compact output (``separators=(',', ':')``, what Socket.IO and Engine.IO packets
  use) goes through orjson for ``str``/``int``/``float``/``bool``/``None``/``dict``/``list``/
  ``tuple``; subclasses, dataclasses, dates, integers beyond 64 bits and any other call go to
  ``json.dumps``. Differences in the *text* (not the value): non-ASCII characters are sent as
  UTF-8 rather than ``\\uXXXX`` escapes (as the Node Socket.IO server does), floats use the
  shortest round-trip form without ``+`` in exponents (``1e16``), and a non-finite float is
  sent as ``null`` instead of the invalid JSON token ``NaN``.
"""

from __future__ import annotations

import json as _json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(r"[0-9]{19}")
_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
_OPTIONS |= orjson.OPT_PASSTHROUGH_DATETIME
_COMPACT = (",", ":")


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _no_default(obj: Any) -> Any:
    raise TypeError  # anything orjson does not encode natively: the standard library decides


def loads(s: str | bytes, **kwargs: Any) -> Any:
    if not kwargs and _LONG_DIGITS.search(s if isinstance(s, str) else s.decode("latin-1")) is None:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            pass
    kwargs.setdefault("parse_constant", _refuse_constant)
    return _json.loads(s, **kwargs)


def dumps(obj: Any, **kwargs: Any) -> str:
    if kwargs.get("separators") == _COMPACT and len(kwargs) == 1:
        try:
            return orjson.dumps(obj, default=_no_default, option=_OPTIONS).decode()
        except TypeError:
            pass  # orjson.JSONEncodeError is a TypeError
    return _json.dumps(obj, **kwargs)
