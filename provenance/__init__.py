"""Provenance: visible and invisible watermarks, H.264 encoding, C2PA signing and verification."""

from provenance.certs import CertificateError, SigningMaterial, check_chain, ensure_dev_chain
from provenance.invisible import InvisibleWatermark, WatermarkError, WatermarkReading
from provenance.manifest import ManifestFacts, ManifestSigner, SigningError, read_manifest
from provenance.verify import VerificationReport, sha256_file, verify
from provenance.video import VideoError, decode_frames, encode_mp4
from provenance.visible import VisibleWatermark

__all__ = [
    "CertificateError",
    "InvisibleWatermark",
    "ManifestFacts",
    "ManifestSigner",
    "SigningError",
    "SigningMaterial",
    "VerificationReport",
    "VideoError",
    "VisibleWatermark",
    "WatermarkError",
    "WatermarkReading",
    "check_chain",
    "decode_frames",
    "encode_mp4",
    "ensure_dev_chain",
    "read_manifest",
    "sha256_file",
    "verify",
]
