"""What a trained model needs to be used as it was meant: a JSON card beside its weights.

Every consumer of a model (the module CLIs, the Nuclio zips, ``pipeline.process``, the bridge
through the zips) reads the card of the weights it is given, so thresholds, templates and sizes
travel with the model instead of living in each consumer's defaults.

The card is ``model_card.json`` in the folder of the weights file (``runs/x/weights/best.pt`` ->
``runs/x/weights/model_card.json``; a Nuclio zip carries it beside ``best.pt``). Known keys, all
optional:

- ``task``: what the model does (``gridcorners``, ``gridpose``, ``coralseg``, ``mmseg``).
- ``imgsz``: the network input side in px it was trained at.
- ``warp_size``: the side in px of the warped quadrats it was trained on (or, for a corner
  model, the warp it is meant to produce).
- ``conf``, ``kpt_conf``, ``max_cost``: recommended detection, keypoint and matching thresholds.
- ``template``: file name, beside the card, of the keypoint template (a ``.npy``).
- ``classes``, ``level``: class names in index order and their taxonomy level.
- ``made_by``: the command, seed and synthetic generator version that made a model shipped with
  the project; ``weights_sha256``: the sha256 of its weights file, checked before it is used.

Examples:
    >>> import tempfile, pathlib
    >>> weights = pathlib.Path(tempfile.mkdtemp()) / "best.pt"
    >>> _ = write_model_card(weights, {"task": "gridcorners", "conf": 0.05})
    >>> read_model_card(weights)["conf"]
    0.05
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quadratseg.atomic import atomic_write_json
from quadratseg.errors import QuadratsegError

MODEL_CARD_NAME = "model_card.json"


def model_card_path(weights: str | Path) -> Path:
    """The card of a weights file: ``model_card.json`` in the same folder."""
    return Path(weights).parent / MODEL_CARD_NAME


def read_model_card(weights: str | Path) -> dict[str, Any]:
    """The card of ``weights`` as a dict; an empty dict when the model has none.

    Raises:
        QuadratsegError: the card exists but is not a JSON object.
    """
    path = model_card_path(weights)
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QuadratsegError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(card, dict):
        raise QuadratsegError(f"{path} must hold a JSON object, not {type(card).__name__}")
    return card


def write_model_card(weights: str | Path, updates: Mapping[str, Any]) -> Path:
    """Merge ``updates`` into the card of ``weights`` (created if missing), written atomically."""
    card = read_model_card(weights)
    card.update(updates)
    return atomic_write_json(model_card_path(weights), card)


def card_level(weights: str | Path) -> str:
    """The taxonomy level the card of ``weights`` declares for the model's classes ("" when it
    declares none): what ``pipeline.process`` and ``DINOv2_mmseg.predict`` report the cover at
    (``quadratseg.taxonomy.Taxonomy.model_level``)."""
    return str(read_model_card(weights).get("level") or "")


def require_card_fields(
    weights: str | Path, wanted: Mapping[str, Any], use: str, needs: str
) -> dict[str, Any]:
    """The card of ``weights``, once every field of ``wanted`` is what it states (a start model's
    classes, level and sizes before a training loads it: the libraries load the tensors whose shapes
    fit and leave the rest random with a warning at most).

    Raises:
        QuadratsegError: ``"{weights} is not {use}: its card says {...}, {needs} {...}"`` naming each
            field that differs.

    Examples:
        >>> import tempfile, pathlib
        >>> weights = pathlib.Path(tempfile.mkdtemp()) / "best.pt"
        >>> _ = write_model_card(weights, {"level": "main_family"})
        >>> require_card_fields(weights, {"level": "finegrained"}, "a start here", "this trains")
        Traceback (most recent call last):
        ...
        quadratseg.errors.QuadratsegError: ... its card says {'level': 'main_family'}, this trains ...
    """
    card = read_model_card(weights)
    wrong = [key for key, value in wanted.items() if card.get(key) != value]
    if wrong:
        says = {key: card.get(key) for key in wrong}
        trains = {key: wanted[key] for key in wrong}
        raise QuadratsegError(f"{weights} is not {use}: its card says {says}, {needs} {trains}")
    return card
