"""What installing deskctl puts into site-packages: one package, its migrations inside."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_the_migrations_inside_deskctl(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("deskctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "deskctl",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith("deskctl/migrations/versions/")}
    assert shipped == {p.name for p in (REPO / "migrations" / "versions").glob("*.py")}

    # Unpacked where site-packages would hold it, away from the repository: db upgrade works.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "DESKCTL_HOME": str(tmp_path / "home")}
    env.pop("DESKCTL_DB", None)
    code = (
        "import deskctl, sys; from deskctl.cli import main; print(deskctl.__file__);"
        " sys.exit(main(['db', 'upgrade']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(site / "deskctl" / "__init__.py")
    assert "database at revision" in done.stdout
