"""Import of one synthetic "CVAT for images 1.1" export: ours vs FiftyOne's CVATImageDataset importer.

    .venv/bin/python benchmarks/bench_import.py [--images 200] [--colonies 30] [--repeat 2]

Both read the same annotations.xml and images in the same run, into FiftyOne's bundled
database (a temporary one). Ours also copies the media into task folders, checks every image
decodes, and derives the three coarser taxonomy fields; FiftyOne's references the images in
place. Prints both times (best of --repeat) and the ratio ours / FiftyOne.
"""

from __future__ import annotations

import argparse
import time

from _common import isolated_workdir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--colonies", type=int, default=30)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = isolated_workdir("bench-import-")
    from quadratseg.settings import Settings
    from quadratseg.synth import SynthConfig, generate_dataset

    t0 = time.perf_counter()
    config = SynthConfig(
        images=args.images, seed=0, size=args.size, min_colonies=args.colonies, max_colonies=args.colonies + 2
    )
    synth = generate_dataset(work / "synth", config)
    export = synth / "cvat_exports" / "segmentation"
    print(f"generated {args.images} images in {time.perf_counter() - t0:.1f} s")

    import fiftyone as fo

    from data_engineering.create_fiftyone_dataset import run_pull

    fo.Dataset("warm-up").delete()  # start mongod before timing
    ours, theirs = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        summary = run_pull(
            "bench",
            "xml",
            str(export),
            dataset_name=f"ours-{i}",
            mode="force_refresh",
            settings=Settings(media_dir=work / f"media-{i}"),
        )
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        ds = fo.Dataset.from_dir(
            dataset_dir=str(export),
            dataset_type=fo.types.CVATImageDataset,
            data_path="images",
            labels_path="annotations.xml",
            name=f"fiftyone-{i}",
        )
        theirs.append(time.perf_counter() - t)
        n_theirs = ds.count("polylines.polylines") if "polylines" in ds.get_field_schema() else 0
    n_ours = sum(summary["shapes_per_label"].values())
    print(f"polygons: ours {n_ours}, FiftyOne {n_theirs} in {summary['images']} images")
    print(f"ours (pull + media copy + taxonomy fields): {min(ours):.2f} s")
    print(f"FiftyOne CVATImageDataset importer:        {min(theirs):.2f} s")
    print(f"ratio ours / FiftyOne: {min(ours) / min(theirs):.2f}")


if __name__ == "__main__":
    main()
