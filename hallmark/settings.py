"""Settings: environment variables prefixed HALLMARK_, or a TOML config file (HALLMARK_CONFIG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Where Hallmark keeps its data and which models, policy and keys it uses."""

    model_config = SettingsConfigDict(env_prefix="HALLMARK_", extra="forbid")

    # Database, keys, certificates and outputs live here unless set one by one.
    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("hallmark", appauthor=False)))
    database_url: str | None = None  # default: sqlite:///<data_dir>/audit.db
    policy: Path | None = None  # default: the policy shipped in policy/policies/default.toml

    # "tiny" is the built-in offline model; otherwise a diffusers hub id or a local directory.
    model: str = "tiny"
    model_revision: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    torch_threads: int | None = None

    # open_clip architecture and weights for the frame filter: a pretrained tag or checkpoint path.
    # Empty: the architecture runs without pretrained weights and reports itself "uncalibrated".
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = ""

    # Invisible watermark: "tilemark" (Hallmark's keyed, robust mark) or an invisible-watermark
    # baseline, "dwtDctSvd" or "dwtDct" (no key: anyone can read or forge those).
    watermark_method: Literal["tilemark", "dwtDctSvd", "dwtDct"] = "tilemark"
    # TileMark key file (TOML, see provenance/watermark.py). Empty: a development key is created
    # in <data_dir>/watermark-keys.toml on first run. A configured file must exist.
    watermark_keys: Path | None = None
    video_crf: int = Field(default=18, ge=0, le=51)

    # C2PA signing. Empty: a development chain is created in <data_dir>/certs on first run.
    signing_chain: Path | None = None
    signing_key: Path | None = None
    # Or the key lives in a KMS or HSM: "package.module:function", a function bytes -> signature.
    signing_callback: str | None = None
    # PEM bundle of trust anchors (e.g. the C2PA trust list); default: the development root.
    trust_anchors: Path | None = None
    # PEM bundle of signing certificates used before a rotation (their audit checkpoints verify).
    retired_signing_certs: Path | None = None
    # PEM bundle of other signing certificates whose files count as made by this generator (the
    # other deployments of one service). Current and retired ones are pinned without it.
    pinned_signers: Path | None = None
    tsa_url: str | None = None  # RFC 3161 timestamp authority; offline, files are signed without one

    # A Soft Binding Resolution API (another Hallmark's /v1) that `hallmark verify` asks for the
    # original manifest of a stripped or re-encoded file, when the local store does not know it.
    resolver_url: str | None = None

    max_upload_mb: int = Field(default=512, gt=0)  # POST /v1/verify
    # The public verification routes: the largest frame decoded, per-client requests a minute,
    # and verifications decoding at once (more wait up to 2 s, then get 429).
    max_video_pixels: int = Field(default=4096 * 4096, gt=0)
    verify_rate_per_minute: int = Field(default=60, gt=0)
    verify_concurrency: int = Field(default=2, gt=0)

    # Generation jobs: "inprocess" (worker threads of `hallmark serve`) or "celery" (Celery
    # workers on `broker_url`, run with `hallmark worker`). Videos and reports go to artifact_dir.
    jobs: Literal["inprocess", "celery"] = "inprocess"
    broker_url: str = "redis://127.0.0.1:6379/0"
    artifact_dir: Path | None = None  # default: <data_dir>/artifacts; shared by the API and workers
    job_lease_s: float = Field(default=60.0, gt=0)  # a running job silent this long is retried
    job_max_attempts: int = Field(default=3, ge=1)
    job_visibility_timeout_s: int = Field(default=3600, gt=0)  # Redis: redeliver unacknowledged tasks
    job_fps: int = Field(default=8, ge=1, le=60)
    job_steps: int = Field(default=8, ge=1, le=200)

    # Logs are JSON lines; prompts are left out unless this is set (they are personal data).
    log_prompts: bool = False
    log_level: str = "INFO"

    # The audit chain head is signed (with the signing key above) every this many chained rows.
    audit_checkpoint_every: int = Field(default=1000, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("HALLMARK_CONFIG")
        if config:
            if not Path(config).is_file():
                raise FileNotFoundError(f"HALLMARK_CONFIG={config}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'audit.db'}"

    @property
    def watermark_keys_path(self) -> Path:
        return self.watermark_keys or self.data_dir / "watermark-keys.toml"

    @property
    def artifacts_path(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"
