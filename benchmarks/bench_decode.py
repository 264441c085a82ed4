"""JPEG decoding: quadratseg.images.decode_image_rgb against the plain library calls, one thread and
two threads at once (the local engine's reader beside a writer, the bridge's job threads).

    .venv/bin/python benchmarks/bench_decode.py [--size 1920] [--repeat 20]

The photo is a synthetic textured picture encoded at quality 92 (about 0.7 MB at 1920 px).
Figures: milliseconds per decode (the median of 5 turns, the calls taking turns) of ``ours``
(decode_image_rgb: header and EXIF read by PIL, libjpeg-turbo through simplejpeg stopping on a
data-loss warning), ``simplejpeg`` (the bare call) and ``opencv`` (``cv2.imdecode`` and the BGR ->
RGB conversion, the decoder used before), each serial and with two threads decoding at once; the
ratios of ours to each plain call in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROUNDS = 5  # each figure is the median of this many turns


def per_decode_ms(decode, repeat: int, threads: int) -> float:
    """Milliseconds per decode, ``threads`` threads each decoding ``repeat`` times."""
    workers = [threading.Thread(target=lambda: [decode() for _ in range(repeat)]) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 1000 * (time.perf_counter() - start) / (repeat * threads)


def main() -> None:
    import cv2
    import simplejpeg

    from quadratseg.images import decode_image_rgb

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur((rng.random((args.size, args.size, 3)) * 255).astype(np.uint8), (9, 9), 3)
    data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    calls = {
        "ours": lambda: decode_image_rgb(data),
        "simplejpeg": lambda: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        "opencv": lambda: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        ),
    }
    for call in calls.values():
        call()  # warm up
    figures = {"size": args.size, "jpeg_bytes": len(data), "ms_per_decode": {}}
    runs: dict[tuple[str, int], list[float]] = {}
    for _ in range(ROUNDS):  # the calls take turns, so a slow spell of the machine hits them all
        for name, call in calls.items():
            for n in (1, 2):
                runs.setdefault((name, n), []).append(per_decode_ms(call, args.repeat, n))
    for name in calls:
        figures["ms_per_decode"][name] = {
            str(n): round(statistics.median(runs[(name, n)]), 2) for n in (1, 2)
        }
    ms = figures["ms_per_decode"]
    figures["ours_over"] = {
        name: {n: round(ms["ours"][n] / ms[name][n], 2) for n in ("1", "2")}
        for name in ("simplejpeg", "opencv")
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
