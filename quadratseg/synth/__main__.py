"""CLI: ``python -m quadratseg.synth OUT_DIR --images N --seed S --size PX [--world varied]``."""

from __future__ import annotations

from pathlib import Path

from quadratseg.synth.dataset import SynthConfig, generate_dataset


def synth(
    out_dir: str,
    images: int = 20,
    seed: int = 0,
    size: int = 1024,
    warped_size: int = 0,
    min_colonies: int = 7,
    max_colonies: int = 12,
    overwrite: bool = False,
    workers: int = 0,
    aspect: float = 1.0,
    world: str = "simple",
    holdout_share: float = 0.2,
) -> str:
    """Make synthetic raw photo-quadrats and the CVAT exports of the three projects.

    Args:
        out_dir: folder to create (cvat_exports/{corners,grid,segmentation}/, truth.json, manifest.json).
        images: number of quadrats.
        seed: random seed; the same seed gives the same images.
        size: raw photo width in px (height is 3/4 of it).
        warped_size: side of the warped images in px (0: same as size).
        min_colonies: fewest coral colonies per quadrat.
        max_colonies: most coral colonies per quadrat.
        overwrite: replace out_dir if it exists (only once the new set is complete).
        workers: rendering processes (0: one per CPU core).
        aspect: quadrat width / height (1: square; 2: a 1 x 0.5 m quadrat).
        world: "simple" (pale frame, flat seabed, smooth blobs: fast tests) or "varied" (frames,
            reef, water and occluders drawn per photo from documented distributions).
        holdout_share: share of the photos in val, and again in test (0.2: 60/20/20 %).

    Returns:
        The folder written.
    """
    config = SynthConfig(
        images,
        seed,
        size,
        warped_size,
        min_colonies,
        max_colonies,
        aspect=aspect,
        world=world,
        holdout_share=holdout_share,
    )
    return str(generate_dataset(Path(out_dir), config, overwrite=overwrite, workers=workers))


def main() -> None:
    """Console entry ``quadratseg-synth``."""
    from quadratseg.cli import run

    run(synth, name="quadratseg-synth")


if __name__ == "__main__":
    main()
