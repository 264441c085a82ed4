"""CLI: ``python -m grid_inpainting.predict`` is this module's name for ``remove_grid``, the verb the
other modules share (the same command, options and outputs: see grid_inpainting.remove_grid)."""

if __name__ == "__main__":
    from grid_inpainting.remove_grid import main
    from quadratseg.cli import run

    run(main, name="grid_inpainting.predict")
