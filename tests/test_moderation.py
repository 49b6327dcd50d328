import numpy as np
import pytest

from moderation import (
    BlocklistClassifier,
    ClipConceptFilter,
    NudityClassifier,
    ProfanityClassifier,
    PromptModel,
    SemanticClassifier,
    normalise,
)
from policy import Action, BlocklistRule, ClipConcept, NudityRule, Policy, SemanticCategory, Thresholds
from policy.schema import ProfanityRule


def test_normalise_folds_leetspeak_confusables_and_invisible_characters():
    assert normalise("P0RN") == "porn"
    assert normalise("pоrn") == "porn"  # Cyrillic o
    assert normalise("p\u200bo\u200drn") == "porn"  # zero-width characters
    assert normalise("ｎｕｄｅ") == "nude"  # full-width forms
    assert normalise("nüde") == "nude"


def test_blocklist_matches_obfuscated_terms_as_whole_words():
    classifier = BlocklistClassifier(
        {
            "sexual": BlocklistRule(terms=["porn", "nsfw"]),
            "review": BlocklistRule(action="flag", terms=["brand x"]),
        }
    )
    hits = {
        p: {v.category: v.action for v in classifier.classify(p)}
        for p in ("some p0rn please", "NSFW clip", "a cornfield at dawn", "porno", "a Brand  X ad")
    }
    assert hits["some p0rn please"]["sexual"] is Action.block
    assert hits["NSFW clip"]["sexual"] is Action.block
    assert hits["a cornfield at dawn"]["sexual"] is Action.allow
    assert hits["porno"]["sexual"] is Action.allow  # whole words only
    assert hits["a Brand  X ad"]["review"] is Action.flag
    verdict = next(v for v in classifier.classify("some p0rn please") if v.category == "sexual")
    assert verdict.detail == "matched 'porn'" and verdict.score == 1.0 and verdict.threshold == 1.0


def test_profanity_classifier_scores_real_model():
    classifier = ProfanityClassifier(
        ProfanityRule(category="harassment", thresholds=Thresholds(flag=0.5, block=0.9))
    )
    rude = classifier.classify("you are a fucking idiot")[0]
    polite = classifier.classify("a paper boat drifting on a pond")[0]
    assert rude.score > 0.9 > 0.1 > polite.score
    assert (rude.action, polite.action) == (Action.block, Action.allow)
    assert rude.classifier == "alt-profanity-check" and rude.classifier_version


def test_semantic_classifier_ranks_explicit_prompt_above_benign(pipeline):
    model = next(c for c in pipeline.prompt_classifiers if isinstance(c, PromptModel))
    categories = {
        "sexual": SemanticCategory(
            thresholds=Thresholds(flag=0.40, block=0.48),
            exemplars=["a naked woman", "explicit pornographic scene"],
        ),
        "violence": SemanticCategory(
            thresholds=Thresholds(flag=0.42, block=0.50),
            exemplars=["a man being stabbed with blood spraying", "graphic gore"],
        ),
    }
    semantic = SemanticClassifier(model.encoder, categories)
    explicit = {v.category: v for v in semantic.classify("a naked woman posing on a bed")}
    benign = {v.category: v for v in semantic.classify("a paper boat drifting on a pond")}
    assert explicit["sexual"].score > benign["sexual"].score + 0.3
    assert explicit["sexual"].action is Action.block
    assert benign["sexual"].action is Action.allow
    assert "nearest exemplar" in explicit["sexual"].detail
    gore = {v.category: v for v in semantic.classify("a man is stabbed and blood sprays everywhere")}
    assert gore["violence"].action is not Action.allow


def test_uncalibrated_clip_filter_runs_but_cannot_block():
    concepts = {"anything": ClipConcept(prompts=["a photo"], thresholds=Thresholds(block=0.0))}
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 96, 3), dtype=np.uint8)
    clip = ClipConceptFilter(concepts, pretrained=None, uncalibrated_max_action=Action.flag)
    (verdict,) = clip.classify(frames)
    assert not verdict.calibrated and "uncalibrated" in verdict.classifier_version
    assert verdict.action is Action.flag  # the threshold says block; uncalibrated caps it
    sims = clip.similarities(frames)["anything"]
    assert sims.shape == (3, 1) and np.all(np.abs(sims) <= 1.0001)
    # Batched and one-by-one scoring agree: frames are independent.
    single = np.concatenate([clip.similarities(frames[i : i + 1])["anything"] for i in range(3)])
    np.testing.assert_allclose(sims, single, atol=1e-4)


def test_clip_filter_with_missing_pretrained_weights_fails_loudly(tmp_path):
    from moderation import ClipLoadError

    concepts = {"x": ClipConcept(prompts=["a"], thresholds=Thresholds(block=0.5))}
    with pytest.raises(ClipLoadError, match="no_such_checkpoint"):
        ClipConceptFilter(concepts, pretrained=str(tmp_path / "no_such_checkpoint.pt"))


def test_nudenet_detector_runs_on_a_real_photograph(pipeline):
    from skimage import data

    detector = next(c for c in pipeline.image_classifiers if isinstance(c, NudityClassifier))._detector
    labels = {d["class"] for d in detector.detect(data.astronaut())}
    assert "FACE_FEMALE" in labels
    face_rule = NudityRule(
        category="faces", labels=["FACE_FEMALE"], thresholds=Thresholds(flag=0.2, block=0.3)
    )
    (verdict,) = NudityClassifier(detector, face_rule, stage="image").classify(data.astronaut())
    assert verdict.action is Action.block and verdict.score >= 0.3 and verdict.detail == "FACE_FEMALE"
    (clean,) = NudityClassifier(detector, Policy.load().image.nudity, stage="image").classify(
        data.astronaut()
    )
    assert clean.action is Action.allow
