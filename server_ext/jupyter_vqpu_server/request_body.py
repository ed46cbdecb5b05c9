"""Reading a request body as JSON without letting its size or shape hurt the server.

Two bounds, both before ``json.loads``: the size (checked against the
Content-Length before tornado reads the body, see ``handlers.ApiMixin``) and
the nesting depth. ``json.loads`` recurses once per level and answers a body
nested 100,000 deep with a RecursionError (a 500); the depth here is counted
on the raw text in linear time, with JSON strings taken out first so that the
brackets of a circuit inside a string do not count.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from jupyter_vqpu.core.errors import InvalidRequest, PayloadTooLarge

#: Submissions nest 1 deep and calibration documents about 5: anything near this is not a request of ours.
MAX_JSON_DEPTH = 64
# Possessive, and it always matches (an unterminated string runs to the end): one pass over each
# string, never a retry from the quotes inside it.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]++")
_DEPTH = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is {size} bytes, over the limit of {limit}",
                           "send a smaller circuit or document")


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body`` (an upper bound for malformed text); linear time."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    if not brackets:
        return 0
    return max(0, max(itertools.accumulate(map(_DEPTH.__getitem__, brackets))))


def parse_json_body(body: bytes, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The body as JSON, under the bounds; an InvalidRequest (400) or PayloadTooLarge (413) that says what is wrong."""
    if not body:
        raise InvalidRequest("the request has no body", "send a JSON object")
    if len(body) > max_bytes:
        raise too_large(len(body), max_bytes)
    depth = json_depth(body)
    if depth > max_depth:
        raise InvalidRequest(f"the request body nests more than {max_depth} levels deep", "send a flat JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({str(exc)[:200]})", "send a JSON object") from None
