"""Language identification (py3langid, whose model ships in its wheel) and the policy's rule for
prompts in languages the prompt classifier was not trained on."""

from __future__ import annotations

import re
import unicodedata
from importlib import metadata

from moderation.verdict import Verdict, decide
from policy import PromptModelRule, Thresholds

STAGE = "prompt"
_WORD = re.compile(r"[^\W\d_]{2,}")
_COMMON = set(
    "ar bn cs da de el en es fa fi fr he hi hr hu id it ja ko ms nl no pl pt ro ru sk sr sv sw ta th tl tr uk ur vi zh".split()
)
# Languages written in the Latin script (ISO 639-1), for the script check.
_LATIN_SCRIPT = set(
    "af br ca cs cy da de en eo es et eu fi fo fr ga gl hr ht hu id is it ku la lb lt lv mg ms mt nb nl nn no oc pl pt qu ro rw sk sl sq sv sw tl tr vo wa xh zu".split()
)


class LanguageClassifier:
    """Scores how sure it is that a prompt is in none of the policy's languages.

    Short Latin-script prompts ("a corgi", "Salvador Dalí") are too short to identify, so the
    score is 0 below four words unless most letters are in a script the languages do not use.
    """

    name = "py3langid"

    def __init__(self, rule: PromptModelRule) -> None:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
        # Widely written languages only: among all 97, short English phrases look like Pidgin or Javanese.
        self._identifier.set_languages(
            sorted(_COMMON | set(rule.languages) & set(self._identifier.nb_classes))
        )
        self._rule = rule
        self.version = metadata.version("py3langid")

    def identify(self, prompt: str) -> tuple[str, float]:
        """The most likely language, and the probability that the prompt is in none of the policy's."""
        ranked = self._identifier.rank(unicodedata.normalize("NFKC", prompt).casefold())
        supported = sum(float(p) for language, p in ranked if language in self._rule.languages)
        return str(ranked[0][0]), min(max(1.0 - supported, 0.0), 1.0)

    def classify(self, prompt: str) -> list[Verdict]:
        rule = self._rule
        language, unsupported = self.identify(prompt)
        letters = [c for c in prompt if c.isalpha()]
        latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
        other_script = bool(letters) and latin < len(letters) / 2 and set(rule.languages) <= _LATIN_SCRIPT
        if other_script:
            score = 1.0  # most letters in a script none of the policy's languages is written in
        elif len(_WORD.findall(prompt)) >= 4 and language not in rule.languages:
            score = unsupported
        else:
            score = 0.0  # too short to tell English from anything else
        thresholds = Thresholds(**{rule.unsupported_language: rule.language_confidence})
        detail = f"most likely '{language}'; P(not {', '.join(rule.languages)}) = {unsupported:.2f}" + (
            "; mostly non-Latin script" if other_script else ""
        )
        return [decide(STAGE, self.name, self.version, "unsupported_language", score, thresholds, detail)]
