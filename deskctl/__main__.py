"""``python -m deskctl``: the same as the console script."""

from deskctl.cli import run

run()
