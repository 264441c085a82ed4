"""The batch policy of every predict CLI: a failing image is recorded, the others go on.

* Inputs: an image file or a folder, searched recursively (:func:`batch_items`). Each image has
  a key, its path relative to the folder with its suffix kept (``site/2020/a.jpg``); outputs
  are named ``<key><ext>`` (``overlays/site/2020/a.jpg.jpg``), so ``a.jpg`` and ``a.png`` never
  clash and sub-folders are kept.
* :func:`run_batch` runs the per-image function under a progress bar (shown on a terminal);
  an image whose function raises is recorded (key, path, reason) and the batch goes on.
* The output folder is written whole as usual, with ``failures.csv`` (``key,path,reason``,
  a header only when nothing failed); then, if any image failed, :meth:`BatchReport.raise_if_failed`
  raises :class:`BatchFailedError`, which the CLIs turn into exit code 3
  (:data:`FAILED_EXIT_CODE`): outputs written, some images missing. Exit code 2 stays
  "nothing done" (bad input, see :func:`quadratseg.cli.run`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError
from quadratseg.images import ImageScan, image_key, scan_images

logger = logging.getLogger(__name__)

FAILED_EXIT_CODE = 3
FAILURES_FILE = "failures.csv"


@dataclass(frozen=True)
class BatchItem:
    """One input image and its output key."""

    path: Path
    key: str


def batch_items(source: str | Path, exclude: Iterable[str | Path] = ()) -> list[BatchItem]:
    """The images of a file or folder (recursive, sorted) with their keys, none under a folder of
    ``exclude``.

    Raises:
        QuadratsegError: no image there.
    """
    return scan_batch(source, exclude)[0]


def scan_batch(source: str | Path, exclude: Iterable[str | Path] = ()) -> tuple[list[BatchItem], ImageScan]:
    """:func:`batch_items` with what the scan found besides (:class:`quadratseg.images.ImageScan`:
    the image-like files it cannot read, the files left out under ``exclude``)."""
    scan = scan_images(source, exclude=exclude)
    return [BatchItem(p, image_key(p, source)) for p in scan.images], scan


class BatchFailedError(QuadratsegError):
    """Some images of a batch failed; the outputs of the others are written (exit code 3)."""

    exit_code = FAILED_EXIT_CODE

    def __init__(self, failures: list[tuple[str, str, str]], total: int, out_dir: str | Path, summary: Any):
        self.failures = failures
        self.total = total
        self.summary = summary
        key, _path, reason = failures[0]
        super().__init__(
            f"{len(failures)} of {total} images failed and are listed in {Path(out_dir) / FAILURES_FILE} "
            f"(first: {key}: {reason}); the outputs of the other {total - len(failures)} are in {out_dir}"
        )


@dataclass
class BatchReport:
    """What a batch did: how many images, and the failures (key, path, reason)."""

    total: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.total - len(self.failures)

    def write(self, folder: str | Path) -> Path:
        """Write ``failures.csv`` (``key,path,reason``) into ``folder`` atomically (a unique
        temporary name, then one rename: :mod:`quadratseg.atomic`)."""
        from quadratseg.atomic import atomic_write_text

        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["key", "path", "reason"])
        writer.writerows(self.failures)
        return atomic_write_text(Path(folder) / FAILURES_FILE, text.getvalue())

    def raise_if_failed(self, out_dir: str | Path, summary: Any = None) -> None:
        """Raise :class:`BatchFailedError` (carrying ``summary``) if any image failed."""
        if self.failures:
            raise BatchFailedError(self.failures, self.total, out_dir, summary)


def run_batch(items: list[BatchItem], fn: Callable[[BatchItem], Any], desc: str = "images") -> BatchReport:
    """Run ``fn`` on every item with a progress bar; record the ones that raise and go on.

    Interrupts (Ctrl-C, SystemExit) are not caught.
    """
    from tqdm import tqdm

    report = BatchReport(total=len(items))
    for item in tqdm(items, desc=desc, unit="image", disable=None):
        try:
            fn(item)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, QuadratsegError) else f"{type(exc).__name__}: {exc}"
            report.failures.append((item.key, str(item.path), reason))
            logger.warning("%s failed: %s", item.key, reason)
            logger.debug("%s failed", item.key, exc_info=True)
    return report
