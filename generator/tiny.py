"""The built-in tiny text-to-video model: a real diffusers pipeline built from configs in code.

It has the architecture of ModelScope text-to-video (UNet3D, VAE, CLIP text encoder) at a tiny
size, with weights initialised from a fixed seed, so it runs offline in seconds on a CPU and is
identical on every machine. Its frames are genuine outputs of an untrained model: coloured noise,
not pictures. Configure a real checkpoint (HALLMARK_MODEL) for real videos.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

TINY_MODEL_ID = "hallmark/tiny-text-to-video"
TINY_MODEL_VERSION = "1"
_SEED = 20261125


def build_clip_tokenizer():
    """A CLIPTokenizer built offline from the BPE vocabulary that ships inside open_clip."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    # The same vocabulary construction as open_clip's SimpleTokenizer (and OpenAI's CLIP).
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab_file.write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


def build_tiny_pipeline():
    """The tiny TextToVideoSDPipeline, seeded so its weights are the same everywhere."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        unet = UNet3DConditionModel(
            block_out_channels=(16, 32),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            cross_attention_dim=64,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            norm_num_groups=4,
        )
        vae = AutoencoderKL(
            block_out_channels=(16, 16, 32, 32),
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            latent_channels=4,
            sample_size=256,
            norm_num_groups=4,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    # diffusers logs a deprecation notice for this pipeline class; the architecture is what we
    # want here (small, CLIP-conditioned), so keep that notice out of users' terminals.
    with quiet_diffusers():
        return TextToVideoSDPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
        )


@contextmanager
def quiet_diffusers() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
