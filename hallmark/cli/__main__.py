"""`python -m hallmark.cli`."""

from hallmark.cli import app

app()
