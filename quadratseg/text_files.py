"""Text files a user hands the project (truth cover, photo metadata, taxonomy, CoralNet points):
read as UTF-8, a spreadsheet's byte-order mark dropped, or refused with the file, the first byte
that is not UTF-8 and the fix. One reader, so every table fails the same clear way."""

from __future__ import annotations

from pathlib import Path

from quadratseg.errors import QuadratsegError


def read_utf8_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` (UTF-8, with or without a byte-order mark); ``what`` names the file's
    role in the messages ("metadata file", "truth table").

    Raises:
        QuadratsegError: the file does not exist, is a folder, cannot be read, or is not UTF-8 (a
            spreadsheet's local code page, e.g. Latin-1: the byte and its offset are named).
    """
    source = Path(path)
    if source.is_dir():
        raise QuadratsegError(f"{what} {source} is a folder: give the file itself")
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise QuadratsegError(f"{what} {source} does not exist") from None
    except OSError as exc:
        raise QuadratsegError(f"cannot read {what} {source}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuadratsegError(
            f"{what} {source} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): save it as UTF-8 (a spreadsheet's 'CSV UTF-8')"
        ) from None
