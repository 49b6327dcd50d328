"""The `hallmark` command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Hallmark: guarded, watermarked and signed AI video generation.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
policy_app = typer.Typer(help="Generation policies.", no_args_is_help=True)
keys_app = typer.Typer(help="TileMark watermark keys (secrets are never printed).", no_args_is_help=True)
api_keys_app = typer.Typer(
    help="API keys for the HTTP API (roles: generator, reviewer, admin).", no_args_is_help=True
)
db_app = typer.Typer(help="The audit database's schema.", no_args_is_help=True)
certs_app = typer.Typer(help="C2PA signing certificates.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure screening on labelled data.", no_args_is_help=True)
train_app = typer.Typer(help="Train the screening models that ship with Hallmark.", no_args_is_help=True)
calibrate_app = typer.Typer(help="Fit screening thresholds to labelled data.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="watermark-keys")
app.add_typer(api_keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(certs_app, name="certs")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(calibrate_app, name="calibrate")

console = Console(stderr=True)
EXIT_BLOCKED, EXIT_ERROR = 3, 4


def _settings(**overrides):
    from hallmark.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video should show.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the signed MP4.")],
    image: Annotated[Path | None, typer.Option(help="Input image to start from (screened first).")] = None,
    frames: Annotated[int, typer.Option(min=8, max=512)] = 16,
    height: Annotated[int, typer.Option(min=128, max=2160)] = 256,
    width: Annotated[int, typer.Option(min=128, max=3840)] = 256,
    steps: Annotated[int, typer.Option(min=1, max=200)] = 8,
    seed: int = 0,
    fps: Annotated[int, typer.Option(min=1, max=120)] = 8,
    policy: Annotated[Path | None, typer.Option(help="Policy TOML file (default: the shipped one).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    tier: Annotated[
        str | None, typer.Option(help="Policy tier whose limits apply (default: the policy's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Generate a screened, watermarked, C2PA-signed MP4 and write its audit record."""
    from generator import GenerationRequest
    from hallmark.compose import build_pipeline
    from policy import PolicyError

    # The pipeline reserves the path itself; checking here too saves loading the models first.
    if output.exists() and not overwrite:
        raise _fail(f"{output} exists; pass --overwrite to replace it")
    settings = _settings(policy=policy)
    input_image, image_file = _load_image(image) if image else (None, None)
    try:
        with console.status("Loading models and policy..."):
            pipeline = build_pipeline(settings)
    except (PolicyError, OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    request = GenerationRequest(
        prompt=prompt,
        output=output,
        image=input_image,
        image_file=image_file,
        num_frames=frames,
        height=height,
        width=width,
        steps=steps,
        seed=seed,
        fps=fps,
        overwrite=overwrite,
        tier=tier,
    )
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        try:
            result = pipeline(request, progress=on_progress)
        except Exception as exc:  # the audit write itself failed: nothing was released
            raise _fail(f"{type(exc).__name__}: {exc}. Nothing was released.", code=EXIT_ERROR) from exc

    if as_json:
        print(json.dumps(_result_json(result, settings), indent=2))
    else:
        _print_result(result, settings)
    if result.status == "blocked":
        raise typer.Exit(EXIT_BLOCKED)
    if result.status == "error":
        raise typer.Exit(1 if result.stage == "request" else EXIT_ERROR)


def _load_image(path: Path):
    """The image's pixels, and the file as given: it becomes the C2PA ingredient, manifest and all."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from provenance import Ingredient

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            media_type = Image.MIME.get(img.format or "", "")
            pixels = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise _fail(f"{path}: not a readable image: {exc}") from exc
    if media_type not in ("image/png", "image/jpeg", "image/webp", "image/tiff", "image/gif"):
        return pixels, None  # a format C2PA cannot carry as an ingredient: a PNG of the pixels is
    return pixels, Ingredient(data, media_type, path.name)


def _result_json(result, settings) -> dict:
    return {
        "generation_id": result.generation_id,
        "status": result.status,
        "output": str(result.output) if result.output else None,
        "output_sha256": result.output_sha256,
        "stage": result.stage,
        "reason": result.reason,
        "flagged": result.flagged,
        "policy": result.policy,
        "model": result.model,
        "watermark_payload": result.watermark_payload,
        "watermark": {
            "method": result.watermark_method,
            "key_id": result.watermark_key_id,
            "payload": result.watermark_payload,
        },
        "manifest_label": result.manifest_label,
        "warnings": result.warnings,
        "audit": {"database": settings.resolved_database_url, "record_id": result.record_id},
        "verdicts": [v.to_dict() for v in result.verdicts],
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }


def _print_result(result, settings) -> None:
    out = Console()
    table = Table(title=f"Checks under policy {result.policy}", title_justify="left")
    for column in ("stage", "classifier", "category", "score", "threshold", "action", "note"):
        table.add_column(
            column,
            justify="right" if column in ("score", "threshold") else "left",
            no_wrap=column != "note",
            overflow="fold",
        )
    colours = {"allow": "green", "flag": "yellow", "block": "bold red"}
    for v in result.verdicts:
        note = "uncalibrated" if not v.calibrated else ""
        note = "; ".join(n for n in (note, v.detail if v.action.value != "allow" else "") if n)
        table.add_row(
            v.stage,
            v.classifier,
            v.category,
            f"{v.score:.3f}",
            f"{v.threshold:.3f}",
            f"[{colours[v.action.value]}]{v.action.value}[/]",
            note,
        )
    out.print(table)
    uncalibrated = sorted({v.classifier for v in result.verdicts if not v.calibrated})
    if uncalibrated:
        out.print(
            f"[yellow]uncalibrated:[/] {', '.join(uncalibrated)} ran without pretrained weights; "
            "its scores cannot block (set HALLMARK_CLIP_PRETRAINED)."
        )
    if result.status == "released":
        out.print(
            f"[bold green]released[/] {result.output}"
            + (" [yellow](flagged for review)[/]" if result.flagged else "")
        )
        out.print(f"  sha256 {result.output_sha256}")
        key = f", key id {result.watermark_key_id}" if result.watermark_key_id is not None else ""
        out.print(f"  watermark payload {result.watermark_payload} ({result.watermark_method}{key})")
        out.print(f"  C2PA manifest {result.manifest_label}")
        for warning in result.warnings:
            out.print(f"[yellow]warning:[/] {warning}")
    elif result.status == "blocked":
        out.print(f"[bold red]refused[/] at stage '{result.stage}': {result.reason}. No file was written.")
    else:
        out.print(f"[bold red]failed[/] at stage '{result.stage}': {result.reason}. No file was released.")
    out.print(f"generation id {result.generation_id}")
    out.print(f"audit record #{result.record_id} in {settings.resolved_database_url}")


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="The video to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    resolver: Annotated[
        str | None,
        typer.Option(
            help="A Soft Binding Resolution API (e.g. https://hallmark.example/v1) to ask for the "
            "original manifest of a stripped or re-encoded file. Default: the local store."
        ),
    ] = None,
) -> None:
    """Check a video's C2PA manifest and invisible watermark, recover the original manifest of a
    stripped or re-encoded copy, and find its audit record.

    Exit codes: 0 authentic (trusted manifest, file unaltered); 3 made by this generator but altered
    since signing (re-encoded, edited or stripped); 4 no trusted provenance (no manifest or
    watermark, untrusted signer, or a manifest that does not validate); 1 unreadable file.
    """
    from hallmark.compose import build_watermark, trust_anchors_pem
    from provenance import VideoError
    from provenance import verify as verify_file
    from provenance.resolve import FirstMatch, HttpResolver, StoreResolver

    settings = _settings()
    if not file.is_file():
        raise _fail(f"{file}: no such file")
    resolver_url = resolver or settings.resolver_url
    try:
        watermark, store = build_watermark(settings), _store(settings)
        # The local store first; a remote service for what it does not know.
        resolvers = [StoreResolver(store, watermark)] + ([HttpResolver(resolver_url)] if resolver_url else [])
        report = verify_file(
            file, trust_anchors_pem(settings), watermark, store, resolver=FirstMatch(resolvers)
        )
    except (VideoError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        out = Console()
        out.print(f"[bold]{file}[/] sha256 {report.sha256}")
        for line in report.summary():
            out.print(line, markup=False, highlight=False)
    c = report.conclusion
    if c.made_by_generator and c.altered is False:
        return
    raise typer.Exit(EXIT_BLOCKED if c.made_by_generator else EXIT_ERROR)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Run the HTTP API: generations (generator keys; jobs run in this process unless
    HALLMARK_JOBS=celery), verification and soft-binding resolution (public), the review API and
    its page (reviewer keys). OpenAPI at /docs, Prometheus metrics at /metrics."""
    import uvicorn

    from hallmark.app import create_app
    from hallmark.logs import configure

    settings = _settings()
    log_config = configure(settings.log_level, settings.log_prompts)
    uvicorn.run(create_app(settings, warm=True), host=host, port=port, log_config=log_config)


@app.command()
def worker() -> None:
    """Run a Celery worker for generation jobs (HALLMARK_BROKER_URL, default Redis on 127.0.0.1).
    It loads the pipeline once and runs the jobs the API queued with HALLMARK_JOBS=celery, one at
    a time: start one process per GPU."""
    from hallmark.logs import configure
    from hallmark.worker import run_worker

    settings = _settings()
    configure(settings.log_level, settings.log_prompts)
    run_worker(settings)


def _store(settings):
    from audit import SchemaError
    from hallmark.compose import open_store

    try:
        return open_store(settings)
    except SchemaError as exc:
        raise _fail(str(exc)) from exc


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            help="A checkpoint file kept elsewhere (from `hallmark audit checkpoint --out`); repeatable."
        ),
    ] = None,
) -> None:
    """Recompute the audit log's hash chain, check its signed checkpoints, report the first broken link."""
    from audit import CheckpointStatement

    settings = _settings()
    extra = []
    for path in checkpoint or []:
        try:
            extra.append(CheckpointStatement.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError) as exc:
            raise _fail(f"{path}: not a checkpoint file: {exc}") from exc
    with console.status("Checking the audit chain..."):
        report = _store(settings).verify_chain(extra)
    for warning in dict.fromkeys(report.warnings):
        console.print(f"[yellow]warning:[/] {warning}")
    if report.ok:
        Console().print(
            f"[green]audit chain intact[/]: {report.rows_checked} rows, "
            f"{report.checkpoints_checked} signed checkpoints in {settings.resolved_database_url}"
        )
        return
    raise _fail(
        f"audit chain broken at seq {report.first_broken_seq}: {report.problem} "
        f"({report.rows_checked} rows before it are intact)",
        code=EXIT_ERROR,
    )


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the signed checkpoint here (keep a copy off this machine)."),
    ] = None,
) -> None:
    """Sign the current head of the audit chain now."""
    statement = _store(_settings()).checkpoint()
    if out is not None:
        out.write_text(json.dumps(statement.to_dict(), indent=2) + "\n")
    Console().print(
        f"[green]checkpoint[/] signed at seq {statement.head_seq} ({statement.head_hash[:16]}...)"
        + (f", written to {out}" if out else "")
    )


@audit_app.command("redact")
def audit_redact(
    generation_id: Annotated[str, typer.Argument(help="The record whose prompt and image hash to erase.")],
    reason: Annotated[str, typer.Option(help="The request this answers (kept in the log).")],
    by: Annotated[str, typer.Option(help="Who asked for it.")] = "cli",
) -> None:
    """Erase a record's prompt and input-image hash; a chained redaction event records it."""
    from audit import AuditError

    try:
        row = _store(_settings()).redact(generation_id, reason, by)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    Console().print(f"[green]redacted[/] {generation_id} (event seq {row.seq})")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the audit database to this version's schema (back it up first)."""
    from sqlalchemy import create_engine

    from audit import SchemaError
    from audit.migrate import upgrade

    settings = _settings()
    engine = create_engine(settings.resolved_database_url)
    try:
        before, after = upgrade(engine)
    except SchemaError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    Console().print(f"[green]{settings.resolved_database_url}[/]: {state} schema revision {after}")


@api_keys_app.command("create")
def api_keys_create(
    role: Annotated[str, typer.Option(help="generator, reviewer or admin.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    tenant: Annotated[
        str | None, typer.Option(help="For generator keys: the tenant whose records it sees.")
    ] = None,
    tier: Annotated[
        str | None,
        typer.Option(help="For generator keys: the policy tier it generates under (default: the policy's)."),
    ] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from audit import AuditError
    from audit.keys import create_key
    from policy import Policy, PolicyError

    settings = _settings()
    try:
        if tier is not None:
            Policy.load(settings.policy).tier(tier)  # a tier the policy has
        row, key = create_key(_store(settings), role, name, tenant, tier)
    except (AuditError, PolicyError) as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"[green]created[/] {row.role} key {row.key_id} for {row.name}"
        + (f" (tenant {row.tenant}, tier {row.tier or 'default'})" if row.tenant else "")
        + "; it is shown only this once:"
    )
    print(key)


@api_keys_app.command("list")
def api_keys_list() -> None:
    """Show every key's id, role, tenant, name and state (never the secret)."""
    from audit.keys import list_keys

    table = Table()
    for column in ("key id", "role", "tenant", "name", "created", "state"):
        table.add_column(column)
    for row in list_keys(_store(_settings())):
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        table.add_row(
            row.key_id, row.role, row.tenant or "", row.name, f"{row.created_at:%Y-%m-%d %H:%M}", state
        )
    Console().print(table)


@api_keys_app.command("revoke")
def api_keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `hallmark keys list`.")],
) -> None:
    """Revoke a key at once."""
    from audit import AuditError
    from audit.keys import revoke_key

    try:
        revoke_key(_store(_settings()), key_id)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    Console().print(f"[green]revoked[/] {key_id}")


@keys_app.command("list")
def keys_list() -> None:
    """Show the key file and each key's id and role (the first active key embeds)."""
    from hallmark.compose import watermark_keys
    from provenance import WatermarkError

    settings = _settings()
    path = settings.watermark_keys_path
    try:
        keys = watermark_keys(settings)
    except (WatermarkError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    out = Console()
    out.print(f"watermark keys in {path}")
    for n, key in enumerate(keys):
        out.print(f"  key id {key.key_id}: " + ("embeds and detects" if n == 0 else "detects only (retired)"))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new embedding key and retire the others; videos marked with them still verify."""
    from hallmark.compose import watermark_keys
    from provenance import WatermarkError, rotate_watermark_keys

    settings = _settings()
    path = settings.watermark_keys_path
    try:
        watermark_keys(settings)  # a readable key file, created on first use in development
        new = rotate_watermark_keys(path)
    except (WatermarkError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    Console().print(f"[green]new embedding key[/] id {new.key_id} in {path}; older keys now detect only")


@certs_app.command("check")
def certs_check() -> None:
    """Check the signing chain as generation does at start-up: validity, chain, EKU, key, anchors."""
    from hallmark.compose import build_signer
    from provenance import CertificateError

    try:
        signer = build_signer(_settings())
    except (CertificateError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    Console().print(f"[green]usable[/]: {signer.certificate_subject}")


@certs_app.command("list")
def certs_list() -> None:
    """The signing certificate in use and the retired ones whose checkpoints and files still verify."""
    from hallmark.compose import retired_signers, signing_material
    from provenance import CertificateError

    settings = _settings()
    try:
        material = signing_material(settings)
        active = _load_certs(material.chain_path)[0]
        retired = retired_signers(settings)
    except (CertificateError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    out = Console()
    out.print(f"trust anchors {material.trust_anchors_path}")
    for role, cert in [("signing", active)] + [("retired", c) for c in retired]:
        out.print(
            f"  {role:<8} {cert.subject.rfc4514_string()}  serial {cert.serial_number:x}  valid "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
        )


@certs_app.command("rotate")
def certs_rotate() -> None:
    """Issue a new development signing certificate; the old one is kept as retired.

    Files signed before still verify (same development root), and so do audit checkpoints. For a
    production chain, point HALLMARK_SIGNING_CHAIN and _KEY at the new one and add the old
    certificate to HALLMARK_RETIRED_SIGNING_CERTS."""
    from provenance import rotate_dev_signer

    settings = _settings()
    if settings.signing_chain is not None:
        raise _fail(
            "HALLMARK_SIGNING_CHAIN is configured: rotate it with your CA, then add the old "
            "certificate to HALLMARK_RETIRED_SIGNING_CERTS"
        )
    leaf = rotate_dev_signer(settings.certs_dir)
    Console().print(
        f"[green]new signing certificate[/] serial {leaf.serial_number:x} in {settings.certs_dir}"
    )


def _load_certs(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificates(path.read_bytes())


@eval_app.command("prompts")
def eval_prompts(
    dataset: Annotated[
        list[Path],
        typer.Option(
            "--dataset",
            help="Labelled prompts (CSV prompt,label[,category]; "
            "AILuminate; PartiPrompts). Repeat for several.",
        ),
    ],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts of each file.")] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML file (default: the configured one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    include_seen: Annotated[
        bool, typer.Option(help="Keep prompts the prompt classifier was trained or calibrated on.")
    ] = False,
    batch: Annotated[
        int,
        typer.Option(min=1, max=4096, help="Prompts scored together; 1 measures each prompt's latency."),
    ] = 64,
) -> None:
    """Run the policy's prompt stage on labelled prompts: precision, recall, false-block rate,
    AUPRC, prompts per second and time per prompt per file, and the block rate per category.
    Prompts the classifier was fitted on are left out, so the figures are held-out figures."""
    from dataclasses import asdict

    from hallmark.compose import build_prompt_classifiers, configure_torch
    from moderation import PromptModel
    from moderation.evaluate import DatasetError, load_prompts, metrics, score_prompts
    from policy import Policy, PolicyError

    settings = _settings(policy=policy)
    try:
        sets = {path.name: load_prompts(path, limit) for path in dataset}
        loaded = Policy.load(settings.policy)
    except (DatasetError, PolicyError) as exc:
        raise _fail(str(exc)) from exc
    configure_torch(settings)
    try:
        classifiers = build_prompt_classifiers(settings, loaded)
    except (ValueError, RuntimeError) as exc:  # weights that do not fit the policy, an unloadable model
        raise _fail(str(exc)) from exc
    model = next((c for c in classifiers if isinstance(c, PromptModel)), None)
    if model is not None and not include_seen:
        for name, prompts in sets.items():
            kept = [p for p in prompts if not model.weights.has_seen(p.text)]
            if len(kept) < len(prompts):
                console.print(
                    f"{name}: left out {len(prompts) - len(kept)} prompts the prompt classifier was "
                    "fitted on (--include-seen keeps them)"
                )
            sets[name] = kept

    results = {}
    for name, prompts in sets.items():
        with Progress(
            TextColumn(f"{name:<28}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
        ) as bar:
            task = bar.add_task(name, total=len(prompts))
            scored = score_prompts(
                classifiers, prompts, batch, lambda done, total, t=task: bar.update(t, completed=done)
            )
        if not prompts:
            raise _fail(f"{name}: no prompts left to evaluate")
        results[name] = metrics(scored)
    if as_json:
        print(
            json.dumps(
                {"policy": loaded.label, "datasets": {k: asdict(v) for k, v in results.items()}}, indent=2
            )
        )
        return
    table = Table(title=f"Prompt screening under {loaded.label}", title_justify="left")
    for column in (
        "dataset",
        "n",
        "unsafe",
        "blocked",
        "precision",
        "recall",
        "false blocks",
        "AUPRC",
        "prompts/s",
        "p50 ms",
        "p95 ms",
    ):
        table.add_column(column, justify="left" if column == "dataset" else "right")

    def pct(value):
        return "-" if value is None else f"{value:.1%}"

    for name, m in results.items():
        table.add_row(
            name,
            str(m.n),
            str(m.unsafe),
            str(m.blocked),
            pct(m.precision),
            pct(m.recall),
            pct(m.false_block_rate),
            "-" if m.auprc is None else f"{m.auprc:.3f}",
            f"{m.prompts_per_s:.0f}",
            f"{m.p50_ms:.1f}",
            f"{m.p95_ms:.1f}",
        )
    Console().print(table)
    for name, m in results.items():
        if m.by_category:
            rates = ", ".join(f"{c} {r:.0%}" for c, r in m.by_category.items())
            Console().print(f"{name}: blocked per category: {rates}", highlight=False)


@train_app.command("prompt-classifier")
def train_prompt_classifier(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the weights (.npz).")],
    data: Annotated[Path, typer.Option(help="The shared data folder (prompts/, train_prompts/).")] = Path(
        "../shared/data"
    ),
    policy: Annotated[
        Path | None, typer.Option(help="Policy whose categories and exemplars to train (default: shipped).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, max=500, help="Training epochs of each head [default: as shipped].")
    ] = None,
    heads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=16,
            help="Heads trained from seeds SEED, SEED+1, ... and averaged [default: as shipped].",
        ),
    ] = None,
    seed: int = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most N examples per source (quick runs).")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="An .npz file caching the encoder's pooled layers (float16) between runs."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    without_non_commercial: Annotated[
        bool,
        typer.Option(help="Leave out the sources licensed for non-commercial use only (CC BY-NC)."),
    ] = False,
) -> None:
    """Rebuild the prompt classifier from ../shared/data, the written video prompts and the
    policy's exemplars. `--output moderation/weights/prompt_head.npz` rebuilds the shipped one."""
    from hallmark.compose import configure_torch
    from moderation import HeadWeights, MiniLMEncoder
    from moderation.train import NON_COMMERCIAL, SHIPPED, DataError, train
    from policy import Policy, PolicyError

    if output.exists() and not overwrite:
        raise _fail(f"{output} exists; pass --overwrite to replace it")
    settings = _settings()
    try:
        loaded = Policy.load(policy)
    except PolicyError as exc:
        raise _fail(str(exc)) from exc
    configure_torch(settings)
    with console.status("Loading all-MiniLM-L6-v2..."):
        encoder = MiniLMEncoder(device=settings.device)
    try:
        recipe = replace(SHIPPED, epochs=epochs or SHIPPED.epochs, heads=heads or SHIPPED.heads)
        leave_out = (lambda e: e.source in NON_COMMERCIAL) if without_non_commercial else None
        weights, report = train(
            data,
            loaded,
            encoder,
            cache=cache,
            recipe=recipe,
            seed=seed,
            limit=limit,
            leave_out=leave_out,
            progress=lambda message: console.print(message, highlight=False),
        )
    except DataError as exc:
        raise _fail(str(exc)) from exc
    weights.save(output)
    table = Table(title=f"Positives per category (policy {loaded.label})", title_justify="left")
    for column in ("category", "train", "calibration", "test", "fusion: head, exemplar, profanity, bias"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, counts in report.categories.items():
        table.add_row(
            category,
            *(str(counts[s]) for s in ("train", "calibration", "test")),
            ", ".join(f"{c:+.2f}" for c in report.calibration[category]),
        )
    Console().print(table)
    totals = {split: sum(counts.values()) for split, counts in report.counts.items()}
    Console().print(f"examples: {totals}; trained in {report.seconds:.0f} s")
    Console().print(
        f"[green]wrote[/] {output} ({output.stat().st_size // 1024} KiB, {HeadWeights.load(output).version})"
    )


@calibrate_app.command("frames")
def calibrate_frames(
    positive: Annotated[Path, typer.Option(help="Folder of images that show the concept.")],
    negative: Annotated[Path, typer.Option(help="Folder of images that do not.")],
    concept: Annotated[
        str,
        typer.Option(help="A [frames.clip_concepts] name of the policy, or 'nudenet' for NudeNet's labels."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the calibrated policy.")],
    policy: Annotated[
        Path | None, typer.Option(help="Policy to start from (default: the configured one).")
    ] = None,
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Largest share of negatives that may be blocked.")
    ] = 0.01,
    flag_fpr: Annotated[
        float | None, typer.Option(min=0.0, max=0.9, help="Largest share of negatives that may be flagged.")
    ] = 0.05,
    image_stage: Annotated[
        bool, typer.Option(help="With nudenet: also set the input-image thresholds ([image.nudity]).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Compute a frame filter's thresholds for target false-positive rates from labelled folders,
    and write them into a copy of the policy."""
    from hallmark.compose import configure_torch
    from moderation import ClipConceptFilter, ClipLoadError, NudityClassifier, NudityDetector
    from moderation.calibrate import NUDENET, CalibrationError, calibrate, score_folder, write_thresholds
    from policy import Policy, PolicyError

    if output.exists() and not overwrite:
        raise _fail(f"{output} exists; pass --overwrite to replace it")
    settings = _settings(policy=policy)
    try:
        loaded = Policy.load(settings.policy)
    except PolicyError as exc:
        raise _fail(str(exc)) from exc
    if concept != NUDENET and concept not in loaded.frames.clip_concepts:
        raise _fail(
            f"the policy has no CLIP concept {concept!r} (it has: "
            f"{', '.join(loaded.frames.clip_concepts)}; or use 'nudenet')"
        )
    if flag_fpr is not None and flag_fpr < target_fpr:
        raise _fail(f"--flag-fpr ({flag_fpr}) must be at least --target-fpr ({target_fpr})")
    configure_torch(settings)
    try:
        with console.status("Loading the model..."):
            if concept == NUDENET:
                nudity = NudityClassifier(NudityDetector(), loaded.frames.nudity, stage="frames")
                model = f"{nudity.name} {nudity.version}"

                def score(image):
                    return nudity.image_score(image)[0]
            else:
                clip = ClipConceptFilter(
                    {concept: loaded.frames.clip_concepts[concept]},
                    model_name=settings.clip_model,
                    pretrained=settings.clip_pretrained or None,
                    device=settings.device,
                )
                model = f"{clip.name} {clip.version}"

                def score(image):
                    return float(clip.frame_scores(image[None])[concept][0])

        scores = {}
        for name, folder in (("positive", positive), ("negative", negative)):
            with console.status(f"Scoring {name} images...") as status:
                scores[name] = score_folder(
                    folder, score, lambda n, s=status, k=name: s.update(f"Scoring {k} images: {n}")
                )
        result = calibrate(concept, model, scores["positive"], scores["negative"], target_fpr, flag_fpr)
        stages = ["frames", "image"] if concept == NUDENET and image_stage else ["frames"]
        written = write_thresholds(_policy_path(settings), output, result, stages)
    except (CalibrationError, ClipLoadError, OSError) as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"{concept} on {model}", title_justify="left")
    for column in ("threshold", "value", "negatives over it (FPR)", "positives over it (TPR)"):
        table.add_column(column, justify="left" if column == "threshold" else "right")
    table.add_row(
        "block",
        f"{result.block:.6f}",
        f"{result.block_fpr:.2%} of {result.negatives}",
        f"{result.block_tpr:.2%} of {result.positives}",
    )
    if result.flag is not None:
        table.add_row(
            "flag",
            f"{result.flag:.6f}",
            f"{result.flag_fpr:.2%} of {result.negatives}",
            f"{result.flag_tpr:.2%} of {result.positives}",
        )
    Console().print(table)
    if concept != NUDENET and not clip.calibrated:
        console.print(
            "[yellow]warning:[/] CLIP has no pretrained weights (HALLMARK_CLIP_PRETRAINED): these "
            "thresholds fit a randomly initialised model and its verdicts stay capped at "
            f"{loaded.frames.uncalibrated_max_action.value}"
        )
    Console().print(f"[green]wrote[/] {output} ({written.label})")


def _policy_path(settings) -> Path:
    from policy import default_policy_path

    return Path(settings.policy) if settings.policy else default_policy_path()


@policy_app.command("check")
def policy_check(
    file: Annotated[Path | None, typer.Argument(help="Policy TOML (default: shipped).")] = None,
) -> None:
    """Validate a policy file and print its version."""
    from policy import Policy, PolicyError

    try:
        loaded = Policy.load(file)
    except PolicyError as exc:
        raise _fail(str(exc)) from exc
    Console().print(f"[green]valid[/]: {loaded.label} ({loaded.source})")


if __name__ == "__main__":
    app()
