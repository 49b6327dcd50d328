"""The `hallmark` command line: the root app; each command group lives in its own module."""

from __future__ import annotations

import typer

from hallmark.cli.audit import audit_app
from hallmark.cli.calibrate import calibrate_app
from hallmark.cli.certs import certs_app
from hallmark.cli.db import db_app
from hallmark.cli.eval import eval_app
from hallmark.cli.generate import generate
from hallmark.cli.keys import keys_app
from hallmark.cli.policy import policy_app
from hallmark.cli.serve import serve, worker
from hallmark.cli.train import train_app
from hallmark.cli.verify import verify
from hallmark.cli.watermark_keys import watermark_keys_app

app = typer.Typer(help="Hallmark: guarded, watermarked and signed AI video generation.", no_args_is_help=True)
# The order here is the order `hallmark --help` lists them in.
for command in (generate, verify, serve, worker):
    app.command()(command)
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(watermark_keys_app, name="watermark-keys")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(certs_app, name="certs")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(calibrate_app, name="calibrate")
