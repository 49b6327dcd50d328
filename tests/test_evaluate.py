"""Measuring prompt screening: the metrics against scikit-learn's, the data set formats of
../shared/data, and `hallmark eval prompts` end to end with the real prompt stage."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from moderation.evaluate import DatasetError, LabeledPrompt, Scored, average_precision, load_prompts, metrics


def test_average_precision_matches_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score

    rng = random.Random(7)
    for _ in range(20):
        labels = [rng.random() < 0.3 for _ in range(60)]
        labels[0], labels[1] = True, False
        scores = [round(rng.random(), 1) for _ in labels]  # coarse: many ties
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert average_precision([0.1, 0.2], [True, True]) is None, "undefined with one class"


def test_metrics_count_blocks_by_label_and_category():
    def s(unsafe, blocked, category, score):
        return Scored(LabeledPrompt("p", unsafe, category), score, blocked, False, 0.01)

    m = metrics(
        [
            s(True, True, "a", 0.9),
            s(True, False, "a", 0.4),
            s(False, True, "b", 0.8),
            s(False, False, "b", 0.1),
        ]
    )
    assert (m.n, m.unsafe, m.blocked, m.true_blocks, m.false_blocks) == (4, 2, 2, 1, 1)
    assert m.precision == 0.5 and m.recall == 0.5 and m.false_block_rate == 0.5
    assert m.by_category == {"a": 0.5, "b": 0.5} and m.p50_ms == pytest.approx(10.0)


def test_data_set_formats(tmp_path, shared_data):
    xstest = load_prompts(shared_data / "prompts" / "xstest_prompts.csv")
    assert len(xstest) == 450 and sum(p.unsafe for p in xstest) == 200 and xstest[0].category == "homonyms"
    ailuminate = load_prompts(shared_data / "prompts" / "ailuminate_demo_en_us.csv")
    assert len(ailuminate) == 1200 and all(p.unsafe for p in ailuminate)
    parti = load_prompts(shared_data / "prompts" / "PartiPrompts.tsv", limit=10)
    assert len(parti) == 10 and not any(p.unsafe for p in parti)
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,label\nhello,maybe\n")
    with pytest.raises(DatasetError, match="'maybe' is not safe/unsafe"):
        load_prompts(bad)
    odd = tmp_path / "odd.csv"
    odd.write_text("text,verdict\nhello,1\n")
    with pytest.raises(DatasetError, match="unknown columns"):
        load_prompts(odd)


@pytest.mark.slow
def test_hallmark_eval_prompts_end_to_end(tmp_path):
    from moderation import HeadWeights
    from policy import Policy

    # An exemplar the shipped head was fitted on: evaluation must leave it out.
    weights = HeadWeights.load()
    seen = next(
        e for c in Policy.load().prompt.categories.values() for e in c.exemplars if weights.has_seen(e)
    )
    data = tmp_path / "mine.csv"
    data.write_text(
        "prompt,label,category\n"
        "explicit porn video of a woman,unsafe,sexual\n"
        "a p0rn clip,unsafe,sexual\n"
        "a paper boat drifting on a pond,safe,scene\n"
        "a red kite over a beach at sunset,safe,scene\n"
        f"{seen},unsafe,sexual\n"
    )
    env = {
        **os.environ,
        "HALLMARK_DATA_DIR": str(tmp_path / "d"),
        "HALLMARK_TORCH_THREADS": "2",
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "eval", "prompts", "--dataset", str(data), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "left out 1 prompts the prompt classifier was fitted on" in run.stderr
    result = json.loads(run.stdout)["datasets"]["mine.csv"]
    assert result["n"] == 4 and result["unsafe"] == 2
    assert result["true_blocks"] == 2 and result["false_blocks"] == 0 and result["recall"] == 1.0
    assert result["auprc"] == 1.0 and result["by_category"] == {"scene": 0.0, "sexual": 1.0}
    missing = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "eval", "prompts", "--dataset", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 1 and "no such file" in missing.stderr
