"""pipeline.process run in a test, and the tables it wrote read back."""

from __future__ import annotations

import csv
import json

from pipeline.process import process


def _run(images, out, seg, **options) -> dict:
    return json.loads(process(str(images), str(out), yolo=seg, warp_size=256, **options))


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def _status(out):
    return list(csv.DictReader((out / "status.csv").open()))
