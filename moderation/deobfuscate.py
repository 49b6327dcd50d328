"""Reading a prompt the way an evader hoped it would not be read.

`read_prompt` returns the views of a prompt that the classifiers score (the highest score over
views counts): the text as written, with leetspeak folded, with spaced-out letters joined, with
base64, hex, percent or rot13 payloads decoded, without role-play or "ignore previous
instructions" wrappers, and each storyboard segment on its own. It also names the evasion
techniques it found, which the policy may flag or block on their own.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote

# Characters that render as nothing or as a space and are used to split words past filters.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064"), None
)
# Common Cyrillic and Greek look-alikes of Latin letters (after casefolding).
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ѕ": "s", "і": "i", "ј": "j", "к": "k", "м": "m", "н": "h",
        "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ԁ": "d", "ɡ": "g", "ӏ": "l",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
     "!": "i", "|": "l", "+": "t"}
)  # fmt: skip
_LATIN_LOOKALIKES = set("авеѕіјкмнорстухԁɡӏαβεηικνορτυχω")

# A word that mixes letters with leetspeak digits or symbols: "n4k3d", "s3x", "pr0n".
_LEET_WORD = re.compile(r"(?<!\w)(?=[\w@$!|+]*[a-z])(?=[\w@$!|+]*[013457@$!|+])[a-z0-9@$!|+]{3,}")
# Three or more single letters separated by spaces, dots, dashes or stars: "n a k e d", "s.e.x".
_SPACED = re.compile(r"(?<![a-z])(?:[a-z][ .\-_*]{1,3}){2,}[a-z](?![a-z])")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}[ :]?){6,}(?![0-9a-fA-F])")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}){3,}")
_ROT13_HINT = re.compile(r"\brot-?13\b", re.IGNORECASE)
# Jailbreak and role-play wrappers: sentences that try to talk the model out of its rules.
_WRAPPER = re.compile(
    r"[^.!?\n]*\b(?:ignore (?:all |any )?(?:the )?(?:previous|prior|above|earlier) (?:instructions|rules|prompts?)"
    r"|disregard (?:your|the|all) (?:rules|guidelines|instructions|filters)"
    r"|you are (?:now )?(?:dan|an? (?:uncensored|unfiltered|unrestricted)\b[^.!?\n]*)"
    r"|(?:developer|god|jailbreak|dan) mode"
    r"|pretend (?:that )?(?:you are|you're|to be)[^.!?\n]*"
    r"|(?:without|no) (?:any )?(?:restrictions|filters|censorship|safety (?:rules|filters))"
    r"|(?:let'?s )?role-?play(?: as)?|stay in character"
    r"|this is (?:just )?(?:for )?(?:a )?(?:fiction|hypothetical|research purposes)"
    r"|hypothetically(?: speaking)?"
    r"|decode (?:this|the following)(?: and (?:generate|render|make|show) it)?"
    r")[^.!?\n]*[.!?:]?",
    re.IGNORECASE,
)
# Storyboard segment markers: "Scene 2:", "shot 3 -", "[clip 4]", newlines, pipes, arrows.
_SEGMENT = re.compile(
    r"\n+|\s*\|\s*|\s*->\s*|\s*;\s*|\s*\[?\b(?:scene|shot|segment|clip|part|frame|panel)\s*\d+\s*\]?\s*[:.)\-]\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class View:
    text: str
    how: str  # "as written", "leetspeak folded", "base64 decoded", "segment 2"...


@dataclass(frozen=True)
class Reading:
    views: list[View]
    evasion: list[str] = field(default_factory=list)  # the techniques found, for the audit record

    @property
    def texts(self) -> list[str]:
        return [v.text for v in self.views]


def clean(text: str) -> str:
    """Fold case, compatibility forms, invisible characters, accents and Latin look-alikes."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_INVISIBLE)
    if any(c in _LATIN_LOOKALIKES for c in text) and _mostly_latin(text):
        text = text.translate(_CONFUSABLES)  # only inside Latin text: Russian prose stays Russian
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.split())


def fold_leetspeak(text: str) -> str:
    return text.translate(_LEET)


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    latin = sum(1 for c in letters if c.isascii() or c in "àáâãäåçèéêëìíîïñòóôõöùúûüýÿ")
    return not letters or latin >= len(letters) / 2


def _printable_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(c.isalpha() or c == " " for c in text)
    return text if len(text) >= 4 and letters >= 0.8 * len(text) and " " in text.strip() else None


def _decoded(text: str) -> list[View]:
    """Payloads hidden in encodings, decoded; only those that decode to words count."""
    views = []
    for token in _BASE64.findall(text):
        try:
            decoded = _printable_text(base64.b64decode(token + "=" * (-len(token) % 4), validate=True))
        except (binascii.Error, ValueError):
            decoded = None
        if decoded:
            views.append(View(decoded, "base64 decoded"))
    for token in _HEX.findall(text):
        try:
            decoded = _printable_text(bytes.fromhex(re.sub(r"[ :]", "", token)))
        except ValueError:
            decoded = None
        if decoded:
            views.append(View(decoded, "hex decoded"))
    if _PERCENT.search(text):
        views.append(View(unquote(text), "percent decoded"))
    if _ROT13_HINT.search(text):
        views.append(View(codecs.decode(_ROT13_HINT.sub("", text), "rot13"), "rot13 decoded"))
    return views


def read_prompt(prompt: str, max_views: int = 12) -> Reading:
    """The views of `prompt` to score, and the evasion techniques found in it."""
    compatible = unicodedata.normalize("NFKC", prompt)
    raw = compatible.translate(_INVISIBLE)
    base = clean(prompt)
    views = [View(base, "as written")]
    evasion = []
    if raw != compatible:
        evasion.append("invisible characters")
    if _LEET_WORD.search(base):
        views.append(View(fold_leetspeak(base), "leetspeak folded"))
    if _SPACED.search(base):
        joined = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), base)
        views.append(View(joined, "spaced letters joined"))
        if any(len(re.sub(r"[ .\-_*]", "", m)) >= 4 for m in _SPACED.findall(base)):
            evasion.append("spaced-out letters")
    decoded = _decoded(raw)
    if decoded:
        evasion.extend(sorted({v.how.replace(" decoded", " encoding") for v in decoded}))
        views.extend(View(clean(v.text), v.how) for v in decoded)
    if _WRAPPER.search(base):
        unwrapped = " ".join(_WRAPPER.sub(" ", base).split())
        evasion.append("jailbreak or role-play wrapper")
        if unwrapped:
            views.append(View(unwrapped, "wrapper removed"))
    segments = [s.strip(" .,") for s in _SEGMENT.split(base)]
    segments = [s for s in segments if len(s.split()) >= 2]
    if len(segments) > 1:
        views.extend(View(s, f"segment {i}") for i, s in enumerate(segments, 1))
    unique: dict[str, View] = {}
    for view in views:
        unique.setdefault(view.text, view)
    return Reading(list(unique.values())[:max_views], evasion)
