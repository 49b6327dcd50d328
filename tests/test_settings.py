from pathlib import Path

import pytest

from hallmark.settings import Settings


def test_env_and_config_file(monkeypatch, tmp_path):
    config = tmp_path / "hallmark.toml"
    config.write_text('model = "some/org-model"\nvideo_crf = 20\ndata_dir = "/srv/hallmark"\n')
    monkeypatch.setenv("HALLMARK_CONFIG", str(config))
    monkeypatch.setenv("HALLMARK_VIDEO_CRF", "23")  # the environment wins over the file
    monkeypatch.delenv("HALLMARK_DATA_DIR", raising=False)
    s = Settings()
    assert (s.model, s.video_crf, s.data_dir) == ("some/org-model", 23, Path("/srv/hallmark"))
    assert s.resolved_database_url == "sqlite:////srv/hallmark/audit.db"


def test_defaults_use_a_per_user_data_dir(monkeypatch):
    monkeypatch.delenv("HALLMARK_CONFIG", raising=False)
    monkeypatch.delenv("HALLMARK_DATA_DIR", raising=False)
    s = Settings()
    assert "hallmark" in str(s.data_dir) and s.model == "tiny" and s.clip_pretrained == ""


def test_unknown_setting_and_missing_config_are_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("HALLMARK_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match="absent.toml"):
        Settings()
    bad = tmp_path / "bad.toml"
    bad.write_text("modle = 'typo'\n")
    monkeypatch.setenv("HALLMARK_CONFIG", str(bad))
    with pytest.raises(ValueError, match="modle"):
        Settings()
