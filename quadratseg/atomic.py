"""Outputs that appear whole or not at all.

Example:
    >>> with atomic_output_dir("outputs/clean", overwrite=True) as tmp:  # doctest: +SKIP
    ...     (tmp / "a.jpg").write_bytes(data)
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from quadratseg.errors import QuadratsegError


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; it replaces ``out_dir`` only on success.

    Raises:
        QuadratsegError: ``out_dir`` exists and ``overwrite`` is False (nothing is touched).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise QuadratsegError(
            f"{out} already exists; pass --overwrite to replace it, or choose another folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
