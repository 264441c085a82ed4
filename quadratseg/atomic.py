"""Outputs that appear whole or not at all.

Examples:
    >>> with atomic_output_dir("outputs/clean", overwrite=True) as tmp:  # doctest: +SKIP
    ...     (tmp / "a.jpg").write_bytes(data)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from quadratseg.errors import QuadratsegError


def _new_sibling_dir(out: Path) -> Path:
    """A new empty hidden sibling of ``out``, created with the umask's permissions.

    (``tempfile.mkdtemp`` would make it 0700, and the renamed output would be unreadable to others.)
    """
    for _ in range(100):
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder next to {out}")


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; it replaces ``out_dir`` only on success.

    The folder gets the permissions of any new folder (the umask's), like the files written in it.

    Raises:
        QuadratsegError: ``out_dir`` exists and ``overwrite`` is False (nothing is touched).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise QuadratsegError(
            f"{out} already exists; pass --overwrite to replace it, or choose another folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling_dir(out)
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a uniquely named hidden sibling first (two writers never share a temporary
    name), which then replaces ``path`` in one rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: object) -> Path:
    """:func:`atomic_write_text` of ``value`` as indented JSON (keys in the order given)."""
    import json

    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")
