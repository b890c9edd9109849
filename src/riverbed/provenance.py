"""Where a version comes from, captured on the caller's side: the git checkout of the
working directory and the user name.

The client and the CLI call these when a version is uploaded, so that the registry records
the commit, branch and remote of the code that produced a model without anyone typing them.
The server never looks at its own directory.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Mapping
from typing import Any

__all__ = ["caller", "current_user", "git_info"]


def _git(cwd: str, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def git_info(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"commit", "branch", "remote", "dirty"}`` of the git checkout holding ``path`` (the
    working directory by default); ``{}`` outside a checkout or without git.

    ``branch`` is None on a detached head; ``remote`` is the URL of ``origin`` (or of the
    first remote) when there is one.
    """
    cwd = os.fspath(path) if path is not None else os.getcwd()
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return {}
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD")
    remote = _git(cwd, "remote", "get-url", "origin")
    if remote is None:
        remotes = (_git(cwd, "remote") or "").split()
        remote = _git(cwd, "remote", "get-url", remotes[0]) if remotes else None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": None if branch == "HEAD" else branch,
        "remote": remote,
        "dirty": bool(status),
    }


def current_user() -> str:
    """The name of the user running this process ('' when it cannot be told)."""
    try:
        return getpass.getuser()
    except Exception:  # no user database entry, e.g. in some containers
        return ""


def caller(git: Mapping[str, Any] | bool | None, created_by: str | None) -> dict[str, Any]:
    """The ``git`` and ``created_by`` of a version made here: ``git`` None (or True) captures
    the working directory's checkout and False records none; ``created_by`` None is the
    user name. The client and the in-process engine record the same."""
    if git is None or git is True:
        git = git_info() or None
    elif git is False:
        git = None
    return {"git": git, "created_by": current_user() if created_by is None else created_by}
