import subprocess
import sys

import pytest

from policy import Action, Policy, PolicyError, Thresholds, default_policy_path


def test_default_policy_loads_with_content_hash_version():
    policy = Policy.load()
    assert policy.name == "hallmark-default"
    assert policy.version.startswith("sha256:") and len(policy.version) == len("sha256:") + 16
    assert policy.label == f"{policy.name}@{policy.version}"
    assert len(policy.prompt.categories) >= 11 and policy.frames.clip_concepts
    assert policy.prompt.categories["ip_misuse"].thresholds.block is None  # flagged for review only


def test_version_changes_with_content_and_only_with_content(tmp_path):
    raw = default_policy_path().read_bytes()
    same = tmp_path / "same.toml"
    same.write_bytes(raw)
    edited = tmp_path / "edited.toml"
    edited.write_bytes(raw.replace(b'text = "AI-generated"', b'text = "Made by AI"'))
    assert Policy.load(same).version == Policy.load().version
    assert Policy.load(edited).version != Policy.load().version
    assert Policy.load(edited).provenance.visible_watermark.text == "Made by AI"


def test_invalid_field_error_names_file_field_and_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(
        default_policy_path()
        .read_bytes()
        .replace(b"thresholds = { flag = 0.4, block = 0.7 }", b"thresholds = { flag = 0.99, block = 0.5 }", 1)
    )
    with pytest.raises(PolicyError) as err:
        Policy.load(bad)
    message = str(err.value)
    assert str(bad) in message
    assert "prompt.categories.sexual.thresholds" in message
    assert "must not exceed" in message


def test_unknown_field_and_bad_toml_and_missing_file(tmp_path):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(default_policy_path().read_text() + "\n[prompt.surprise]\nx = 1\n")
    with pytest.raises(PolicyError, match=r"unknown.toml: field 'prompt.surprise': Extra inputs"):
        Policy.load(unknown)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(PolicyError, match="broken.toml: not valid TOML"):
        Policy.load(broken)
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.load(tmp_path / "absent.toml")


def test_thresholds_decide_action_and_threshold():
    t = Thresholds(flag=0.5, block=0.8)
    assert t.decide(0.9) == (Action.block, 0.8)
    assert t.decide(0.6) == (Action.flag, 0.5)
    assert t.decide(0.1) == (Action.allow, 0.5)
    assert Thresholds(block=0.7).decide(0.2) == (Action.allow, 0.7)


def test_policy_check_cli_reports_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\nname = "x"\n')
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "policy", "check", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "bad.toml" in run.stderr and "field 'prompt'" in run.stderr and "Field required" in run.stderr
    good = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "policy", "check"], capture_output=True, text=True
    )
    assert good.returncode == 0 and Policy.load().version in good.stdout
