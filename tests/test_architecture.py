"""The layers of DESIGN.md, kept honest by reading the imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from deskctl.cli import app

PACKAGE = Path(__file__).resolve().parent.parent / "deskctl"

# Each layer may import only the layers listed after it (and itself).
RANK = {
    "cli": 0, "context": 2, "commands": 1, "jobs": 2, "services": 3, "transport": 4,
    "auth": 4, "store": 4, "mail": 5, "config": 5, "errors": 6, "output": 1, "samples": 6,
}  # fmt: skip
# What a layer must never import, whatever its rank.
FORBIDDEN = {
    "services": {"typer", "rich", "click"},
    "mail": {"sqlalchemy", "typer", "rich", "imap_tools", "smtplib"},
    "store": {"typer", "rich"},
    "transport": {"sqlalchemy", "typer", "rich"},
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "deskctl" or len(parts) < 2:
        return None
    return parts[1]


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_lower_layers_never_import_higher_ones(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own not in RANK:
        return
    for module in imports(path):
        target = layer_of(module)
        if target is not None and target != own and target in RANK:
            assert RANK[target] >= RANK[own], f"{path.name}: {own} imports {module}"
        top = module.split(".")[0]
        assert top not in FORBIDDEN.get(own, set()), f"{path.name}: {own} imports {module}"


def test_only_the_exit_boundary_calls_sys_exit() -> None:
    offenders = [
        p.name for p in PACKAGE.rglob("*.py") if "sys.exit(" in p.read_text() and p.name != "cli.py"
    ]
    assert offenders == []


def walk_commands(group, prefix=()):  # type: ignore[no-untyped-def]
    for name, sub in getattr(group, "commands", {}).items():
        yield (*prefix, name), sub
        yield from walk_commands(sub, (*prefix, name))


def test_every_command_has_help_with_an_example(run_deskctl) -> None:  # type: ignore[no-untyped-def]
    import typer

    commands = list(walk_commands(typer.main.get_command(app)))
    assert len(commands) > 8
    for path, command in commands:
        result = run_deskctl(*path, "--help")
        assert result.exit_code == 0, path
        if not hasattr(command, "commands"):
            assert "Example:" in (command.help or ""), f"{' '.join(path)} --help has no example"
