"""Wrappers and obfuscations put around training prompts so the prompt classifier judges the request,
not its packaging.

Prompts wrapped in HTML, JSON or a jailbreak template, or padded with filler, were judged by their
wrapper: an HTML prefix hid a harmful request, and role-play templates made benign requests look
unsafe. Typos, split words, leetspeak and look-alike letters let unsafe prompts through. Training
on wrapped and obfuscated copies of safe and unsafe prompts alike, each keeping its label, teaches
the classifier that none of these say anything about the label.

    rng = random.Random(0)
    text, family = augment("a fox running through snow, drone footage", rng)

The wrapper texts are in moderation/data/wrappers.toml. bench/perturb.py holds a disjoint set for
measuring robustness to wrappers the classifier never saw.
"""

from __future__ import annotations

import functools
import html
import json
import random
import re
import string
import tomllib
from collections.abc import Callable
from pathlib import Path

WRAPPERS_TOML = Path(__file__).parent / "data" / "wrappers.toml"

WRAPPER_FAMILIES: tuple[str, ...] = (
    "html",
    "markdown",
    "code_fence",
    "json",
    "quoted",
    "preamble",
    "roleplay",
    "ignore_previous",
    "prefix_noise",
)
OBFUSCATION_FAMILIES: tuple[str, ...] = ("typos", "split_words", "leetspeak", "lookalikes")
FAMILIES: tuple[str, ...] = WRAPPER_FAMILIES + OBFUSCATION_FAMILIES

# A word is a run of letters in any script; digits and underscores split words.
_WORD = re.compile(r"[^\W\d_]+")
_LEET = {"a": "4", "e": "3", "o": "0", "i": "1", "s": "5"}
# Mostly Cyrillic, with a few Greek, IPA and Armenian letters; bench/perturb.py leans the other way.
_LOOKALIKES = {
    "a": "аɑ",
    "e": "е",
    "o": "оοօ",
    "p": "р",
    "c": "с",
    "y": "у",
    "x": "х",
    "i": "іı",
    "u": "ս",
    "v": "ν",
    "A": "А",
    "B": "В",
    "C": "С",
    "E": "Е",
    "H": "Н",
    "K": "К",
    "M": "М",
    "O": "О",
    "P": "Р",
    "T": "Т",
    "X": "Х",
}


@functools.cache
def _data() -> dict[str, dict[str, list[str]]]:
    return tomllib.loads(WRAPPERS_TOML.read_text(encoding="utf-8"))


def template_texts() -> dict[str, list[str]]:
    """Every text a wrapper family (and the request frame) draws on (templates, sentences, names,
    words), by family."""
    return {
        family: [item for values in section.values() for item in values]
        for family, section in _data().items()
    }


def wrap(text: str, family: str, rng: random.Random) -> str:
    """`text` with one family's wrapper or obfuscation applied, chosen at random with `rng`.

    Obfuscations leave a text unchanged when it has no word they apply to (typos need a word of
    four letters or more, split_words one of five or more).
    """
    if family not in _FAMILY_FUNCTIONS:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    return _FAMILY_FUNCTIONS[family](text, rng)


def augment(text: str, rng: random.Random) -> tuple[str, str]:
    """`text` with a family drawn at random applied; returns (new text, family name).

    When the drawn obfuscation finds no word to change, a wrapper family is used instead, so the
    result always differs from `text`.
    """
    family = rng.choice(FAMILIES)
    out = wrap(text, family, rng)
    if out == text:
        family = rng.choice(WRAPPER_FAMILIES)
        out = wrap(text, family, rng)
    return out, family


def as_request(text: str, rng: random.Random) -> str:
    """`text` asked for as a chat request ("Can you make a video of ...?"), from the templates of
    wrappers.toml's [request] section; a trailing full stop of `text` is dropped."""
    return _fill(rng.choice(_data()["request"]["templates"]), text.strip().rstrip("."))


def _fill(template: str, text: str, name: str = "") -> str:
    # The name goes in first so that a prompt containing "{name}" is left as written.
    return template.replace("{name}", name).replace("{text}", text)


def _template(family: str, rng: random.Random) -> str:
    return rng.choice(_data()[family]["templates"])


def _html(text: str, rng: random.Random) -> str:
    # Some letters as decimal character references, as evaders write them to get past word filters.
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    encoded: set[int] = set()
    if letters and rng.random() < 0.4:
        encoded = set(rng.sample(letters, min(len(letters), rng.randint(1, 3))))
    body = "".join(
        f"&#{ord(c)};" if i in encoded else html.escape(c, quote=False) for i, c in enumerate(text)
    )
    return _fill(_template("html", rng), body)


def _markdown(text: str, rng: random.Random) -> str:
    return _fill(_template("markdown", rng), text)


def _code_fence(text: str, rng: random.Random) -> str:
    return _fill(_template("code_fence", rng), text)


def _json(text: str, rng: random.Random) -> str:
    # The template holds the prompt inside a JSON string, so it goes in escaped, without its quotes.
    return _fill(_template("json", rng), json.dumps(text, ensure_ascii=False)[1:-1])


def _quoted(text: str, rng: random.Random) -> str:
    return _fill(_template("quoted", rng), text)


def _preamble(text: str, rng: random.Random) -> str:
    spec = _data()["preamble"]
    before = rng.randint(1, 4)
    after = rng.randint(1, 2) if rng.random() < 0.3 else 0
    sentences = rng.sample(spec["sentences"], before + after)
    lead_in = rng.choice(spec["lead_ins"])
    request = f"{lead_in} {text}" if lead_in else text
    separator = rng.choice([" ", "\n", "\n\n"])
    return separator.join([*sentences[:before], request, *sentences[before:]])


def _roleplay(text: str, rng: random.Random) -> str:
    return _fill(_template("roleplay", rng), text, rng.choice(_data()["roleplay"]["names"]))


def _ignore_previous(text: str, rng: random.Random) -> str:
    return _fill(_template("ignore_previous", rng), text)


def _noise(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return "".join(rng.choice(string.punctuation) for _ in range(rng.randint(3, 12)))
    if kind == 1:
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(4, 16)))
    return " ".join(rng.sample(_data()["prefix_noise"]["words"], rng.randint(1, 4)))


def _prefix_noise(text: str, rng: random.Random) -> str:
    where = rng.random()
    if where < 0.6:
        return f"{_noise(rng)} {text}"
    if where < 0.85:
        return f"{text} {_noise(rng)}"
    return f"{_noise(rng)} {text} {_noise(rng)}"


def _pick_words(
    text: str, count: int | None, rng: random.Random, min_len: int, letters: str = ""
) -> list[re.Match[str]]:
    """Up to `count` (all if None) words of at least `min_len` letters, holding one of `letters` if
    given, longer words first more often: they carry the meaning, where "a" and "the" do not."""
    words = [
        m
        for m in _WORD.finditer(text)
        if len(m.group()) >= min_len and (not letters or any(c in letters for c in m.group()))
    ]
    words.sort(key=lambda m: len(m.group()) + 3 * rng.random(), reverse=True)
    return words if count is None else words[:count]


def rewrite_words(text: str, words: list[re.Match[str]], change: Callable[[str], str]) -> str:
    """`text` with each of the matched `words` replaced by `change(word)`, the rest as it was."""
    out, end = [], 0
    for m in sorted(words, key=lambda m: m.start()):
        out += [text[end : m.start()], change(m.group())]
        end = m.end()
    return "".join(out) + text[end:]


def _typos(text: str, rng: random.Random) -> str:
    def typo(word: str) -> str:
        swappable = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
        if swappable and rng.random() < 0.6:
            i = rng.choice(swappable)
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        i = rng.randrange(len(word))
        return word[:i] + word[i + 1 :]

    return rewrite_words(text, _pick_words(text, rng.randint(1, 3), rng, min_len=4), typo)


def _split_words(text: str, rng: random.Random) -> str:
    def split(word: str) -> str:
        i = rng.randint(2, len(word) - 2)
        return f"{word[:i]} {word[i:]}"

    return rewrite_words(text, _pick_words(text, rng.randint(1, 2), rng, min_len=5), split)


def _leetspeak(text: str, rng: random.Random) -> str:
    mappable = "".join(_LEET) + "".join(_LEET).upper()
    candidates = _pick_words(text, None, rng, min_len=3, letters=mappable)
    words = candidates[: rng.randint(1, max(1, len(candidates) // 2))]
    spaced = rng.random() < 0.35

    def leet(word: str) -> str:
        positions = [i for i, c in enumerate(word) if c.lower() in _LEET]
        chosen = {i for i in positions if rng.random() < 0.7} or {rng.choice(positions)}
        chars = [_LEET[c.lower()] if i in chosen else c for i, c in enumerate(word)]
        return " ".join(chars) if spaced else "".join(chars)

    return rewrite_words(text, words, leet)


def _lookalikes(text: str, rng: random.Random) -> str:
    def disguise(word: str) -> str:
        positions = [i for i, c in enumerate(word) if c in _LOOKALIKES]
        chosen = {i for i in positions if rng.random() < 0.4} or {rng.choice(positions)}
        return "".join(rng.choice(_LOOKALIKES[c]) if i in chosen else c for i, c in enumerate(word))

    words = _pick_words(text, rng.randint(1, 3), rng, min_len=3, letters="".join(_LOOKALIKES))
    return rewrite_words(text, words, disguise)


_FAMILY_FUNCTIONS: dict[str, Callable[[str, random.Random], str]] = {
    "html": _html,
    "markdown": _markdown,
    "code_fence": _code_fence,
    "json": _json,
    "quoted": _quoted,
    "preamble": _preamble,
    "roleplay": _roleplay,
    "ignore_previous": _ignore_previous,
    "prefix_noise": _prefix_noise,
    "typos": _typos,
    "split_words": _split_words,
    "leetspeak": _leetspeak,
    "lookalikes": _lookalikes,
}
