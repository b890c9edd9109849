"""Everything the benchmark needs besides riverbed itself, set up on first use.

- ``wrk`` (Debian's package) as the load generator: installed with apt-get when missing.
- chantilly 0.3.0 and django-river-ml 0.0.21 from PyPI, each in its own virtual environment
  under ``benchmarks/.work/venvs`` (ignored by git), with gunicorn to serve them:

  * chantilly pins nothing that still works together, so it gets today's river and Flask,
    plus the import shim in ``peers/chantilly_app.py`` (``river.metrics.Metric`` moved).
  * django-river-ml 0.0.21 depends on ``cerebrus``, a misspelt, unrelated package: it is
    installed with ``--no-deps`` and then given its real dependencies by hand, with
    ``django-ratelimit<4`` (4.0 renamed the ``ratelimit`` module the package imports).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["PEERS", "WORK", "ensure_peer", "ensure_wrk", "peer_python"]

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"

# name -> (install steps: lists of pip arguments, marker package to check)
PEERS: dict[str, list[list[str]]] = {
    "chantilly": [["chantilly==0.3.0", "gunicorn"]],
    "django-river-ml": [
        ["--no-deps", "django-river-ml==0.0.21"],
        [
            "django",
            "djangorestframework",
            "django-ratelimit<4",
            "pyjwt",
            "river",
            "redis",
            "dill",
            "gunicorn",
        ],
    ],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    log("setup: wrk is missing; installing it with apt-get (Debian package 'wrk')")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed; install Debian's 'wrk' package")
    return found


def peer_dir(name: str) -> Path:
    return WORK / "venvs" / name


def peer_python(name: str) -> Path:
    return peer_dir(name) / "bin" / "python"


def ensure_peer(name: str) -> Path:
    """The peer's virtual environment, created and filled on first use."""
    directory = peer_dir(name)
    marker = directory / ".installed"
    if marker.exists():
        return directory
    log(f"setup: creating a virtual environment for {name} in {directory}")
    if directory.exists():
        shutil.rmtree(directory)
    venv.create(directory, with_pip=True)
    pip = [str(directory / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for step in PEERS[name]:
        subprocess.run([*pip, *step], check=True)
    marker.touch()
    return directory
