"""The bridge's acknowledgement latency and its detection overhead, against the bare handler.

    .venv/bin/python benchmarks/bench_bridge.py [--demo outputs/demo] [--frames 20] [--deliveries 50]

Needs ``make demo`` (its YOLO-seg model and synthetic photos) and ``../shared/data`` (the CVAT
stand-in's schema and REST dumps). Everything runs on 127.0.0.1: the CVAT stand-in, the coral
function zip served by ``loopback/function_server.py``, and ``python -m bridge`` as a process.

- Acknowledgement: ``--deliveries`` signed ``update:job`` deliveries sent at once, each a new state
  change (so each is recorded and queued); p50 and p99 of the time to the answer (CVAT waits 10 s).
- Detection: one job of ``--frames`` photos through the bridge (frame download, re-encoding check,
  HTTP call to the function, shapes converted, one upload), frames per minute from the job's own
  timings, against the zip's ``handler`` called directly on the same frames in one process. The ratio
  is what the bridge adds per frame.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import isolated_workdir

DIRECT = """
import base64, json, sys, time, nuclio_sdk, nuclio_sdk.test
import main
platform = nuclio_sdk.test.Platform()
bodies = [json.dumps({"image": b, "threshold": 0.25}) for b in json.load(open(sys.argv[1]))]
platform.call_handler(main.handler, nuclio_sdk.Event(body=bodies[0]))  # model loaded, warmed up
start = time.perf_counter()
for body in bodies:
    platform.call_handler(main.handler, nuclio_sdk.Event(body=body))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def signed(payload: dict, secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"X-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default="outputs/demo")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--deliveries", type=int, default=50)
    args = parser.parse_args()
    demo = Path(args.demo).resolve()
    weights = demo / "runs" / "coralseg" / "weights" / "best.pt"
    photos = sorted((demo / "synthetic" / "cvat_exports" / "segmentation").rglob("*.jpg"))
    if not weights.is_file() or not photos:
        raise SystemExit(f"no trained model or photos under {demo}: run `make demo` first (or pass --demo)")
    work = isolated_workdir("bench-bridge-")

    import httpx

    from bridge.app import signed_path
    from coral_seg_yolo.deploy_as_zip import deploy_as_zip
    from loopback.cvat_standin import CvatServer
    from loopback.harness import BridgeProcess, FunctionProcess, bridge_environment, unpack_zip
    from quadratseg.cvat_client import Cvat, connect
    from quadratseg.formats.cvat_labels import labels_to_raw_config
    from quadratseg.labelsets import coral_labels
    from quadratseg.settings import Settings

    frames = [photos[i % len(photos)] for i in range(args.frames)]
    function_dir = unpack_zip(
        deploy_as_zip("pth-yolo-coralsegv4", str(weights), output=str(work / "zip")), work / "fn"
    )
    bodies = work / "bodies.json"
    bodies.write_text(json.dumps([base64.b64encode(p.read_bytes()).decode() for p in frames]))
    direct = subprocess.run(
        [sys.executable, "-c", DIRECT, str(bodies)],
        cwd=function_dir,
        env={**os.environ, "PYTHONPATH": str(function_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    direct_s = json.loads(direct.stdout.strip().splitlines()[-1])["seconds"]

    server = CvatServer(Path(args.shared_data)).start()
    function = FunctionProcess(function_dir).start()
    secret = "bench"
    env = bridge_environment(server.url, work / "bridge", {"pth-yolo-coralsegv4": function.url}, secret)
    bridge = BridgeProcess(env, workers=1, log_path=work / "bridge.log").start()
    try:
        project = server.state.add_project("corals", labels_to_raw_config(coral_labels(level="main_family")))[
            "id"
        ]
        settings = Settings(cvat_host=server.url, cvat_username="admin", cvat_password="admin-password")
        staged = Path(tempfile.mkdtemp(dir=work))
        files = []
        for i, photo in enumerate(frames):
            files.append(staged / f"frame_{i:04d}.jpg")
            files[-1].write_bytes(photo.read_bytes())
        with connect(settings) as client:
            cvat = Cvat(client)
            task = cvat.create_task(project, "bench", "test", files)
            (job,) = cvat.task_jobs(task["id"])
        url = bridge.url + signed_path(  # the URL python -m bridge.urls makes (an unsigned one gets 401)
            secret,
            "/detect-model-webhook",
            model_name="pth-yolo-coralsegv4",
            threshold=0.25,
            project_id=project,
        )

        def delivery(updated: str, job_id: int) -> dict:
            return {
                "event": "update:job",
                "job": {**job, "id": job_id, "state": "in progress", "updated_date": updated},
                "before_update": {"state": "new"},
                "webhook_id": 1,
                "sender": {"url": "", "id": 1, "username": "admin", "first_name": "", "last_name": ""},
            }

        # detection throughput first, on an idle bridge
        body, headers = signed(delivery("bench-detect", job["id"]), secret)
        job_id = httpx.post(url, content=body, headers=headers, timeout=30).json()["job_id"]
        done = bridge.wait_job(job_id, 600)
        bridge_s = done["timings"]["frames_s"]
        # acknowledgements under concurrent deliveries (for jobs CVAT does not have: they fail fast later)
        latencies: list[float] = []

        def send(i: int) -> None:
            body, headers = signed(delivery(f"ack-{i}", 10_000_000 + i), secret)
            start = time.perf_counter()
            answer = httpx.post(url, content=body, headers=headers, timeout=30)
            latencies.append(time.perf_counter() - start)
            assert answer.status_code == 202, answer.text

        threads = [threading.Thread(target=send, args=(i,)) for i in range(args.deliveries)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        bridge.stop()
        function.stop()
        server.stop()
    result = {
        "state": done["state"],
        "frames": args.frames,
        "bridge_frames_per_min": round(60 * args.frames / bridge_s, 1),
        "direct_frames_per_min": round(60 * args.frames / direct_s, 1),
        "overhead_ratio": round(bridge_s / direct_s, 3),
        "deliveries": args.deliveries,
        "ack_p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        "ack_p99_ms": round(1000 * percentile(latencies, 0.99), 1),
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
