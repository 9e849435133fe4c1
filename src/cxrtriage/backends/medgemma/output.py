"""Defensive parsing of MedGemma's free-text answer into a small, validated structure.

Pure Python (no torch) so it can be unit-tested exhaustively and reused by any runtime (transformers,
llama.cpp, a remote endpoint). Why defensive: MedGemma 4B follows system instructions poorly, MedGemma 1.5
prefixes a thinking trace (``<unused94>...<unused95>``), and generative output routinely comes wrapped in
code fences, followed by prose, with single quotes or trailing commas. Nothing the model says is trusted as is:
the urgency must be one of two spellings, the box is clamped to the image and degenerate boxes are dropped,
and a "supporting quote" is kept only if it really occurs in the prior report (never show an invented quote).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Urgency = Literal["Urgent", "Non-Urgent"]

THINK_OPEN = "<unused94>"
THINK_CLOSE = "<unused95>"
MAX_EXPLANATION_CHARS = 300
MIN_QUOTE_CHARS = 8  # shorter "quotes" ("the", "left") match any report and prove nothing
MIN_BOX_PX = 2  # boxes thinner than this in either direction are degenerate

_SPECIAL_TOKENS = re.compile(r"<(?:end_of_turn|start_of_turn|eos|bos|pad)>")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*")
_KEY_ALIASES = {
    "urgency": "urgency",
    "label": "urgency",
    "triage": "urgency",
    "explanation": "explanation",
    "reason": "explanation",
    "rationale": "explanation",
    "box": "box",
    "bbox": "box",
    "box_2d": "box",
    "bounding_box": "box",
    "supporting_quote": "supporting_quote",
    "quote": "supporting_quote",
}


@dataclass(frozen=True)
class MedGemmaAnswer:
    """A usable MedGemma answer; every field already validated against the image and the report."""

    urgency: Urgency | None  # None when the model gave no recognisable urgency (no agreement flag possible)
    explanation: str  # one line, at most MAX_EXPLANATION_CHARS
    box_xywh: tuple[int, int, int, int] | None  # original-image pixels
    supporting_quote: str | None  # exact substring of the prior report
    raw: str  # the full generated text, for audit logs


# --------------------------------------------------------------------------- text clean-up


def strip_thinking(text: str) -> str:
    """Remove MedGemma 1.5 thinking traces, including one cut off by the token limit."""
    while THINK_OPEN in text:
        start = text.index(THINK_OPEN)
        end = text.find(THINK_CLOSE, start)
        if end < 0:  # unterminated: the trace ran to the end of the generation
            text = text[:start]
            break
        text = text[:start] + text[end + len(THINK_CLOSE) :]
    if THINK_CLOSE in text:  # opener was in the prompt / skipped: everything before the closer is thought
        text = text[text.rindex(THINK_CLOSE) + len(THINK_CLOSE) :]
    return text


def _clean(text: str) -> str:
    text = strip_thinking(text)
    text = _SPECIAL_TOKENS.sub(" ", text)
    return _FENCE.sub(" ", text)


# --------------------------------------------------------------------------- JSON extraction


def _is_apostrophe(text: str, i: int) -> bool:
    """A ``'`` squeezed between two letters (patient's) is not a string delimiter."""
    return text[i] == "'" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _balanced_object_end(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``start`` (string-aware), or None if unbalanced."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote and not _is_apostrophe(text, i):
                quote = None
        elif ch in "\"'" and not _is_apostrophe(text, i):
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_PY_LITERALS = {"None": "null", "True": "true", "False": "false"}


def _json5ish_to_json(src: str) -> str:
    """Minimal repairs: single-quoted strings, trailing commas, Python literals (None/True/False)."""
    out: list[str] = []
    i = 0
    n = len(src)
    while i < n:
        ch = src[i]
        if ch == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(src[i : j + 1])
            i = j + 1
        elif ch == "'":
            j = i + 1
            buf: list[str] = []
            while j < n:
                c = src[j]
                if c == "\\" and j + 1 < n:
                    buf.append(src[j + 1])
                    j += 2
                    continue
                # closing quote = a ' not squeezed between two letters (keeps "patient's" intact)
                if c == "'" and not _is_apostrophe(src, j):
                    break
                buf.append(c)
                j += 1
            out.append(json.dumps("".join(buf)))
            i = j + 1
        elif ch == ",":
            k = i + 1
            while k < n and src[k].isspace():
                k += 1
            if k < n and src[k] in "}]":
                i += 1  # drop trailing comma
                continue
            out.append(ch)
            i += 1
        elif ch.isalpha():
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            word = src[i:j]
            out.append(_PY_LITERALS.get(word, word))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def extract_json_object(text: str) -> dict[str, Any] | None:
    """First balanced ``{...}`` in ``text`` that parses (strictly, then with minimal repairs) to a dict."""
    text = _clean(text)
    pos = text.find("{")
    while pos >= 0:
        end = _balanced_object_end(text, pos)
        if end is not None:
            candidate = text[pos:end]
            for attempt in (candidate, None):
                try:
                    obj = json.loads(attempt if attempt is not None else _json5ish_to_json(candidate))
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict):
                    return obj
        pos = text.find("{", pos + 1)
    return None


# --------------------------------------------------------------------------- field normalisation


def normalise_urgency(value: Any) -> Urgency | None:
    """Map the spellings models actually produce onto the two labels; anything else is None."""
    if not isinstance(value, str):
        return None
    key = re.sub(r"[\s_\-]+", " ", value.strip().strip(".!\"'").lower()).strip()
    if key == "urgent":
        return "Urgent"
    if key in {"non urgent", "nonurgent", "not urgent"}:
        return "Non-Urgent"
    return None


def one_line(text: Any, limit: int = MAX_EXPLANATION_CHARS) -> str:
    """Collapse whitespace/newlines and cap the length at a word boundary."""
    if not isinstance(text, str):
        return ""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def box_to_xywh(box: Any, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``[y0, x0, y1, x1]`` normalised to 0-1000 -> ``(x, y, w, h)`` pixels; None if invalid or degenerate.

    ``image_size`` is ``(height, width)`` of the original image, i.e. ``pixels.shape[:2]``.
    """
    if isinstance(box, (list, tuple)) and len(box) == 1 and isinstance(box[0], (list, tuple)):
        box = box[0]  # [[y0, x0, y1, x1]]
    if isinstance(box, dict):
        keys = ("y0", "x0", "y1", "x1")
        box = [box.get(k) for k in keys] if all(k in box for k in keys) else None
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        return None
    if any(v != v or v in (float("inf"), float("-inf")) for v in vals):
        return None
    y0, x0, y1, x1 = (min(max(v, 0.0), 1000.0) for v in vals)
    y0, y1 = sorted((y0, y1))
    x0, x1 = sorted((x0, x1))
    height, width = int(image_size[0]), int(image_size[1])
    left, right = round(x0 * width / 1000.0), round(x1 * width / 1000.0)
    top, bottom = round(y0 * height / 1000.0), round(y1 * height / 1000.0)
    w, h = right - left, bottom - top
    if w < MIN_BOX_PX or h < MIN_BOX_PX:
        return None
    if w >= width and h >= height:  # "the whole image" localises nothing
        return None
    return left, top, w, h


def _normalised_with_map(text: str) -> tuple[str, list[int]]:
    """Lower-cased, whitespace-collapsed text plus, for each of its chars, the index in ``text``."""
    chars: list[str] = []
    index: list[int] = []
    prev_space = True  # drops leading whitespace
    for i, ch in enumerate(text):
        if ch.isspace():
            if not prev_space:
                chars.append(" ")
                index.append(i)
            prev_space = True
            continue
        low = ch.lower()
        chars.append(low if len(low) == 1 else ch)
        index.append(i)
        prev_space = False
    if chars and chars[-1] == " ":
        chars.pop()
        index.pop()
    return "".join(chars), index


def verify_quote(quote: Any, prior_report: str | None) -> str | None:
    """Return the exact report substring matching ``quote`` (case/whitespace-insensitive), else None."""
    if not isinstance(quote, str) or not prior_report:
        return None
    hay, index = _normalised_with_map(prior_report)
    needle_src = quote.strip().strip("\"'“”‘’«»").strip()
    candidates = [needle_src, needle_src.rstrip(".;:,!")]
    for cand in candidates:
        needle, _ = _normalised_with_map(cand)
        if len(needle) < MIN_QUOTE_CHARS:
            continue
        pos = hay.find(needle)
        if pos >= 0:
            return prior_report[index[pos] : index[pos + len(needle) - 1] + 1]
    return None


# --------------------------------------------------------------------------- entry point


def parse_medgemma_output(text: str, image_size: tuple[int, int], prior_report: str | None) -> MedGemmaAnswer | None:
    """Parse one MedGemma generation; None when there is no usable JSON answer (caller retries / falls back).

    ``image_size`` is ``(height, width)`` of the original image. An answer is usable when it has a non-empty
    explanation; urgency, box and quote are each dropped individually when invalid.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    obj = extract_json_object(text)
    if obj is None:
        return None
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        canon = _KEY_ALIASES.get(str(key).strip().lower())
        if canon and canon not in fields:
            fields[canon] = value
    explanation = one_line(fields.get("explanation"))
    if not explanation:
        return None
    return MedGemmaAnswer(
        urgency=normalise_urgency(fields.get("urgency")),
        explanation=explanation,
        box_xywh=box_to_xywh(fields.get("box"), image_size),
        supporting_quote=verify_quote(fields.get("supporting_quote"), prior_report),
        raw=text,
    )
