"""deskctl as another account runs it: a mail server's pipe user, cron's ``nobody``.

The test run's own interpreter may live where that account cannot read it
(a pyenv or venv under ``/root``, mode 0700), which is exactly what a real
alias or cron line would meet. The launcher is a small script any account
can run: an interpreter that account can reach, with this checkout and the
test environment's packages on its path.
"""

from __future__ import annotations

import shutil
import stat
import sys
import sysconfig
from pathlib import Path

import deskctl

REPO = Path(deskctl.__file__).resolve().parent.parent


def _reachable_by_all(path: Path) -> bool:
    """Every folder on the way world-searchable and the file world-executable."""
    resolved = path.resolve()
    for folder in resolved.parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(resolved.stat().st_mode & stat.S_IXOTH)


def interpreter_for_all() -> str:
    """A Python of this version that every account can run."""
    here = Path(sys.executable)
    if _reachable_by_all(here):
        return str(here)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        raise RuntimeError(f"no {version} that other accounts can run; install Debian's python3")
    return system


def write_launcher(folder: Path) -> Path:
    """``folder/deskctl``: runs this checkout's deskctl for any account (0755)."""
    paths = [str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    script = folder / "deskctl"
    script.write_text(
        f"#!{interpreter_for_all()} -I\n"
        "import sys\n"
        f"sys.path[:0] = {sorted(set(paths), key=paths.index)!r}\n"
        "from deskctl.cli import run\n"
        "run()\n"
    )
    script.chmod(0o755)
    return script
