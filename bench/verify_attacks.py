"""Verification under attack (issue 20): forged manifests from a CA the verifier trusts, mutated
files through the public route and `verify()`, and a file that names a URL for its manifest.

    python bench/verify_attacks.py [--cases 3000] [--seed 2020]

Prints three tables: the forgery cases and what the report concludes; the fuzz cases by kind of
mutation (HTTP statuses, 5xx, exceptions other than the documented VideoError, the slowest case,
peak memory); and the requests a local listener got while files naming it were verified.
"""

from __future__ import annotations

import argparse
import http.server
import random
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000, help="mutated files")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()

    import torch
    from conftest import look_alike_facts, natural_frames, sign_as_other_tool
    from fastapi.testclient import TestClient

    from generator import GenerationRequest
    from hallmark.app import create_app
    from hallmark.compose import build_pipeline, signing_identities, trust_anchors_pem
    from hallmark.settings import Settings
    from provenance import ManifestSigner, VideoError, encode_mp4, ensure_dev_chain, verify
    from provenance.fuzz import MUTATIONS, mutate
    from provenance.video import decode_frames

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="hallmark-attacks-"))
    # One client sends every request here: its rate limit is lifted (the tests measure the limit).
    settings = Settings(data_dir=work / "data", torch_threads=2, verify_rate_per_minute=10**7)
    pipeline = build_pipeline(settings)
    released = pipeline(
        GenerationRequest(
            prompt="a lighthouse at dusk", output=work / "small.mp4", height=128, width=128, steps=2
        )
    )
    assert released.released, released.reason
    signers = signing_identities(settings)
    mallory = ensure_dev_chain(work / "mallory", organisation="Mallory Media")
    anchors = trust_anchors_pem(settings) + mallory.trust_anchors_pem().decode()
    wm = pipeline.invisible_watermark

    # ---- forgery ------------------------------------------------------------------------------
    facts = look_alike_facts(released, pipeline)
    unrelated = work / "unrelated.mp4"
    encode_mp4(natural_frames(16, (128, 128)), unrelated)
    frames = decode_frames(released.output).copy()
    frames[:, 4:28, 4:28] = (220, 20, 20)
    edited = work / "edited.mp4"
    encode_mp4(frames, edited)
    cases = {
        "look-alike on unrelated video, trusted CA, binding copied": unrelated,
        "released video edited (red box), re-signed by a trusted CA": edited,
    }
    print("\n| forgery case | trusted | own key | made by this generator | altered | authentic (exit 0) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, source in cases.items():
        forged = work / f"forged-{len(name)}.mp4"
        ManifestSigner(mallory).sign(source, forged, facts)
        report = verify(forged, anchors, wm, pipeline.audit, signers=signers)
        c = report.conclusion
        authentic = bool(c.made_by_generator and c.altered is False)
        print(
            f"| {name} | {report.manifest.trusted} | {report.manifest.own_signer} | {c.made_by_generator} "
            f"| {c.altered} | {'YES' if authentic else 'no'} |"
        )
    genuine = verify(released.output, anchors, wm, pipeline.audit, signers=signers).conclusion
    print(
        f"| the genuine release (control) | True | True | {genuine.made_by_generator} | {genuine.altered} | yes |"
    )

    # ---- fuzz ---------------------------------------------------------------------------------
    original = released.output.read_bytes()
    rng = random.Random(args.seed)
    rows = {kind: {"n": 0, "statuses": {}, "5xx": 0, "raised": 0, "slowest": 0.0} for kind in MUTATIONS}
    raised: dict[str, int] = {}
    with TestClient(create_app(settings, pipeline=pipeline), raise_server_exceptions=False) as client:
        for case in range(args.cases):
            kind, data = mutate(original, rng)
            row = rows[kind]
            row["n"] += 1
            start = time.perf_counter()
            if case % 2:
                status = client.post("/v1/verify", files={"file": ("x.mp4", data, "video/mp4")}).status_code
            else:
                path = work / "fuzz.mp4"
                path.write_bytes(data)
                try:
                    verify(path, anchors, wm, pipeline.audit, signers=signers)
                    status = 200
                except VideoError:
                    status = 422
                except Exception as exc:  # what the benchmark counts: an undocumented exception
                    status = 500
                    row["raised"] += 1
                    raised[type(exc).__name__] = raised.get(type(exc).__name__, 0) + 1
            row["slowest"] = max(row["slowest"], time.perf_counter() - start)
            row["statuses"][status] = row["statuses"].get(status, 0) + 1
            row["5xx"] += status >= 500
    print(
        f"\n{args.cases} mutated files (seed {args.seed}), half through POST /v1/verify, half through verify():"
    )
    print("| mutation | files | answers | 5xx | exceptions | slowest s |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for kind, row in rows.items():
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(row["statuses"].items()))
        print(f"| {kind} | {row['n']} | {answers} | {row['5xx']} | {row['raised']} | {row['slowest']:.2f} |")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the process (models loaded): {peak_mb:.0f} MB; exceptions: {raised or 'none'}")

    # ---- decode bombs -------------------------------------------------------------------------
    bombs = {"4160x4160 (over the limit)": (4160, 4160), "4096x4096, 8 frames (at the limit)": (4096, 4096)}
    print("\n| upload | file KB | 8 at once: answers | seconds | resident memory growth, peak MB |")
    print("| --- | ---: | --- | ---: | ---: |")
    with TestClient(create_app(settings, pipeline=pipeline), raise_server_exceptions=False) as client:
        for name, (w, h) in bombs.items():
            bomb = work / f"bomb-{w}.mp4"
            encode_mp4(np.zeros((1 if w > 4096 else 8, h, w, 3), np.uint8), bomb)
            body = bomb.read_bytes()
            before = _rss_mb()
            peak = [before]
            sampling = threading.Event()

            def sample(peak=peak, sampling=sampling) -> None:
                while not sampling.wait(0.005):
                    peak[0] = max(peak[0], _rss_mb())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda data: _post(client, data), [body] * 8))
            seconds = time.perf_counter() - start
            sampling.set()
            sampler.join()
            grown = peak[0] - before
            answers = ", ".join(f"{c}: {codes.count(c)}" for c in sorted(set(codes)))
            print(f"| {name} | {len(body) / 1024:.0f} | {answers} | {seconds:.1f} | {grown:.0f} |")

    # ---- SSRF ---------------------------------------------------------------------------------
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/manifest.c2pa"
    plain = work / "plain.mp4"
    encode_mp4(natural_frames(8, (64, 64)), plain)
    remote = sign_as_other_tool(mallory, plain, work / "remote.mp4", "Remote tool", remote_url=url)
    verify(remote, anchors, wm, pipeline.audit, signers=signers)
    with TestClient(create_app(settings, pipeline=pipeline)) as client:
        client.post("/v1/verify", files={"file": ("r.mp4", remote.read_bytes(), "video/mp4")})
    print(f"\nremote-manifest file verified by verify() and POST /v1/verify: listener requests {len(hits)}")
    verify(remote, anchors, wm, pipeline.audit, signers=signers, fetch_remote=True)
    print(f"... and with fetch_remote=True (the CLI's --fetch-remote-manifest): {len(hits)}")
    server.shutdown()


def _rss_mb() -> float:
    """The process's resident memory now (Linux), sampled while the uploads run."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _post(client, data: bytes) -> int:
    return client.post("/v1/verify", files={"file": ("b.mp4", data, "video/mp4")}).status_code


if __name__ == "__main__":
    main()
