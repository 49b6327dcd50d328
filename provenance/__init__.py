"""Provenance: visible and invisible watermarks, H.264 encoding, C2PA signing and verification."""

from provenance.certs import (
    CertificateError,
    SignCallback,
    SigningMaterial,
    check_chain,
    ensure_dev_chain,
    retired_dev_signers,
    rotate_dev_signer,
)
from provenance.invisible import InvisibleWatermark
from provenance.manifest import (
    Ingredient,
    ManifestFacts,
    ManifestSigner,
    SignedManifest,
    SigningError,
    read_manifest,
)
from provenance.tilemark import TileMark
from provenance.verify import VerificationReport, sha256_file, verify
from provenance.video import VideoError, decode_frames, encode_mp4, thumbnail_strip
from provenance.visible import VisibleWatermark
from provenance.watermark import (
    VideoWatermark,
    WatermarkError,
    WatermarkKey,
    WatermarkReading,
    ensure_dev_watermark_keys,
    load_watermark_keys,
    rotate_watermark_keys,
)

__all__ = [
    "CertificateError",
    "Ingredient",
    "SignCallback",
    "SignedManifest",
    "retired_dev_signers",
    "rotate_dev_signer",
    "InvisibleWatermark",
    "ManifestFacts",
    "ManifestSigner",
    "SigningError",
    "SigningMaterial",
    "TileMark",
    "VerificationReport",
    "VideoError",
    "VideoWatermark",
    "VisibleWatermark",
    "WatermarkError",
    "WatermarkKey",
    "WatermarkReading",
    "check_chain",
    "decode_frames",
    "encode_mp4",
    "thumbnail_strip",
    "ensure_dev_chain",
    "ensure_dev_watermark_keys",
    "load_watermark_keys",
    "read_manifest",
    "rotate_watermark_keys",
    "sha256_file",
    "verify",
]
