"""Clip-level frame decisions and frame-filter calibration: aggregation rules, per-frame scores in
the audit record, and `hallmark calibrate frames` on real image folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from moderation import ClipConceptFilter
from moderation.aggregate import clip_score, frame_verdict
from moderation.calibrate import threshold_for_rate
from policy import Action, FrameAggregation, Policy, Thresholds


def test_aggregation_rules():
    scores = np.array([0.1, 0.9, 0.2, 0.7, 0.75, 0.1, 0.8])
    assert clip_score(scores, FrameAggregation()) == (0.9, 1)
    assert clip_score(scores, FrameAggregation(rule="k_of_n", k=3)) == (0.75, 4)
    # three frames within any four consecutive ones: frames 3-6 hold 0.7, 0.75, 0.8
    assert clip_score(scores, FrameAggregation(rule="window", k=3, window=4)) == (0.7, 3)
    assert clip_score(scores, FrameAggregation(rule="window", k=2, window=2))[0] == 0.7
    assert clip_score(np.array([0.4]), FrameAggregation(rule="k_of_n", k=5)) == (
        0.4,
        0,
    )  # fewer frames than k
    for bad in (
        {"rule": "any", "k": 2},
        {"rule": "k_of_n", "k": 2, "window": 4},
        {"rule": "window", "k": 3},
        {"rule": "window", "k": 5, "window": 4},
    ):
        with pytest.raises(ValueError):
            FrameAggregation(**bad)


def test_frame_verdict_keeps_every_frame_score_and_the_frames_that_fired():
    scores = np.array([0.1, 0.6, 0.2, 0.7, 0.1])
    thresholds = Thresholds(flag=0.5, block=0.65)
    any_frame = frame_verdict("frames", "f", "1", "violence", scores, thresholds, FrameAggregation())
    assert any_frame.action is Action.block and any_frame.frames.fired == (3,)
    assert any_frame.frames.scores == tuple(scores) and "frame 3" in any_frame.detail
    two = frame_verdict(
        "frames", "f", "1", "violence", scores, thresholds, FrameAggregation(rule="k_of_n", k=2)
    )
    assert two.action is Action.flag and two.score == 0.6 and two.frames.fired == (1, 3)
    assert two.to_dict()["frames"] == {
        "scores": [0.1, 0.6, 0.2, 0.7, 0.1],
        "fired": [1, 3],
        "rule": "2 of n frames",
    }


@pytest.mark.slow
def test_released_record_keeps_per_frame_scores_and_still_verifies(released, pipeline):
    record = pipeline.audit.get(released.generation_id)
    frames = [v for v in pipeline.audit.verdicts(record.seq) if v.stage == "frames"]
    assert frames and all(v.frames for v in frames)
    for verdict in frames:
        evidence = json.loads(verdict.frames)
        assert len(evidence["scores"]) == 16 and evidence["rule"] == "any frame"
        # under "any frame" the clip score is the highest frame score, clamped to [0, 1] as decide() does
        assert min(max(max(evidence["scores"]), 0.0), 1.0) == pytest.approx(verdict.score, abs=1e-4)
    prompt = [v for v in pipeline.audit.verdicts(record.seq) if v.stage == "prompt"]
    assert prompt and all(v.frames is None for v in prompt)
    assert pipeline.audit.verify_chain().ok


def test_threshold_for_rate_is_the_lowest_that_keeps_the_rate():
    rng = np.random.default_rng(3)
    for n, target in ((200, 0.01), (200, 0.05), (37, 0.1), (10, 0.0)):
        negatives = np.round(rng.random(n), 2)  # many ties
        t = threshold_for_rate(negatives, target)
        assert np.mean(negatives >= t) <= target
        lower = np.max(negatives[negatives < t])  # the next score down would break the rate
        assert np.mean(negatives >= lower) > target


def _images(folder, arrays):
    folder.mkdir()
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return folder


def _natural_images():
    from skimage import data

    images = [
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        np.stack([data.camera()] * 3, -1),
    ]
    out = []
    for image in images:
        for k in range(4):
            out.append(np.ascontiguousarray(np.rot90(image, k)))
            out.append(np.ascontiguousarray(np.rot90(image, k)[:, ::-1]))
    return out


@pytest.mark.slow
def test_calibrate_frames_writes_thresholds_that_reproduce_the_target_rate(tmp_path):
    natural = _natural_images()
    negative = _images(tmp_path / "negative", natural[:30])
    positive = _images(tmp_path / "positive", natural[30:])
    out = tmp_path / "calibrated.toml"
    env = {
        **os.environ,
        "HALLMARK_DATA_DIR": str(tmp_path / "d"),
        "HALLMARK_TORCH_THREADS": "2",
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    command = [
        sys.executable,
        "-m",
        "hallmark.cli",
        "calibrate",
        "frames",
        "--positive",
        str(positive),
        "--negative",
        str(negative),
        "--concept",
        "sexual",
        "--target-fpr",
        "0.1",
        "--flag-fpr",
        "0.2",
        "--output",
        str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (
        "wrote" in run.stdout and "uncalibrated" in run.stdout
    )  # the offline CLIP is said to be uncalibrated
    calibrated = Policy.load(out)
    concept = calibrated.frames.clip_concepts["sexual"]
    assert calibrated.version != Policy.load().version
    text = out.read_text()
    assert "calibrated" in text and "on 10 positive and 30 negative images" in text
    assert "# Hallmark default generation policy." in text  # the file's own comments survive
    # Re-score the negatives as the frame filter will: the rate holds, one notch lower it would not.
    clip = ClipConceptFilter({"sexual": concept}, pretrained=None)
    scores = np.array([clip.frame_scores(image[None])["sexual"][0] for image in natural[:30]]).clip(0, 1)
    assert np.mean(scores >= concept.thresholds.block) <= 0.1
    assert np.mean(scores >= concept.thresholds.flag) <= 0.2
    assert concept.thresholds.flag <= concept.thresholds.block
    assert f"{np.mean(scores >= concept.thresholds.block):.2%} of 30" in run.stdout
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.slow
def test_calibrate_frames_refuses_bad_input(tmp_path):
    env = {**os.environ, "HALLMARK_DATA_DIR": str(tmp_path / "d"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    images = _images(tmp_path / "some", _natural_images()[:3])
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")

    def calibrate(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "hallmark.cli",
                "calibrate",
                "frames",
                *args,
                "--output",
                str(tmp_path / "p.toml"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    unknown = calibrate("--positive", str(images), "--negative", str(images), "--concept", "gambling")
    assert unknown.returncode == 1 and "no CLIP concept 'gambling'" in unknown.stderr
    none = calibrate("--positive", str(images), "--negative", str(empty), "--concept", "violence")
    assert none.returncode == 1 and "no images" in none.stderr
    unreadable = calibrate("--positive", str(images), "--negative", str(broken), "--concept", "violence")
    assert unreadable.returncode == 1 and "not a readable image" in unreadable.stderr
    missing = calibrate(
        "--positive", str(tmp_path / "nope"), "--negative", str(images), "--concept", "violence"
    )
    assert missing.returncode == 1 and "not a directory" in missing.stderr
    assert not (tmp_path / "p.toml").exists()
