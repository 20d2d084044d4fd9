"""Text from specs and the engine made safe to print: control characters shown, not obeyed.

A name, target or reason can carry ESC sequences that clear or rewrite a terminal, line
separators that forge extra lines, and bidi overrides that make one text look like
another. Every renderer and every error line passes untrusted text through
``escape_controls``.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, line/paragraph separators, bidi marks (U+061C, U+200E/F),
# embeddings, overrides and isolates, zero-width characters, the Mongolian vowel
# separator, interlinear annotations, the BOM, and the Unicode tag characters (U+E0000
# to U+E007F, invisible text that some terminals and models still read). Round two: the
# other invisible ones (soft hyphen, Hangul and Khmer fillers, the deprecated format
# characters U+206A-206F) and lone surrogates (which no UTF-8 stream can write: printing
# one would fail). Variation selectors stay: every emoji with U+FE0F has one, and a
# folder named with an emoji must back up and list as it is.
CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\xad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u206f\u3164\ud800-\udfff\ufeff\uffa0"
    r"\ufff9-\ufffb\U000e0000-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def has_control(text: str) -> bool:
    """``text`` holds a character ``escape_controls`` would rewrite."""
    return CONTROL.search(text) is not None


def escape_controls(text: str) -> str:
    """``text`` with each control character written as ``\\n``, ``\\x1b``, ``\\u202e``..."""
    return CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
