"""The bridge on Redis and PostgreSQL with 1 and 3 workers against the bare handler, and its
acknowledgement latency under concurrent deliveries.

    .venv/bin/python benchmarks/bench_bridge.py [--demo outputs/demo] [--frames 20] [--jobs 3]
        [--workers 1,3] [--deliveries 200] [--http-processes 1,2]
    .venv/bin/python benchmarks/bench_bridge.py --weights seg.pt --photos DIR   # any YOLO-seg, any JPEGs

Needs a coral YOLO-seg model and photos (``make demo``'s, or ``--weights`` and ``--photos``),
``../shared/data`` (the CVAT stand-in's schema and REST dumps), and Debian's ``redis-server`` and
PostgreSQL (``scripts/ensure_servers.sh``). Everything runs on 127.0.0.1: the CVAT stand-in, the
coral function zip served by ``loopback/function_server.py``, a ``redis-server`` and a throwaway
PostgreSQL cluster (:mod:`loopback.servers`), ``python -m bridge --noconsumer`` and
``python -m bridge.worker`` processes sharing nothing but those two.

- Detection: ``--jobs`` CVAT jobs of ``--frames`` photos each, all opened at once, worked by 1 and by
  3 worker processes; frames per minute from the first job's start to the last job's end (downloads,
  re-encoding check, HTTP calls to the function, conversion, uploads in batches), against the zip's
  ``handler`` called directly on the same frames in one process.
- Annotation reads: a job's annotations of 190 polygons read as JSON (the bridge's way) against the plain
  cvat-sdk call, and the stand-in's schema check of that answer, which it leaves off for the rest.
- Acknowledgement: ``--deliveries`` signed ``update:job`` deliveries sent at once (each a new state
  change, so each is recorded and queued) to ``python -m bridge --noconsumer --http-processes N`` for
  each N of ``--http-processes``; p50 and p99 of the time to the answer (CVAT waits 10 s), of the median
  of 5 rounds; every answered delivery is then counted in PostgreSQL (recorded before its answer). The
  same deliveries answered by a bare FastAPI app under the same uvicorn (read, parse, 202: nothing
  recorded) give the floor of this machine, where the sender shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
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
FUNCTION = "pth-yolo-coralsegv4"
# the floor of an acknowledgement on this machine: FastAPI under the bridge's uvicorn, reading the body
# and its JSON and answering 202, with nothing recorded or queued
BARE = """
import json, sys
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from bridge.serving import uvicorn_server
app = FastAPI()

@app.post("/detect-model-webhook")
async def bare(request: Request) -> JSONResponse:
    json.loads(await request.body())
    return JSONResponse({"status": "queued"}, 202)

uvicorn_server(app, "127.0.0.1", int(sys.argv[1])).run()
"""
ROUNDS = 5  # of --deliveries at once; the p99 reported is the median round's (the VM's noise is +-30 %)


def signed(payload: dict, secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"X-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def delivery(job: dict, updated: str, job_id: int | None = None) -> dict:
    """An ``update:job`` delivery opening ``job`` (state new -> in progress)."""
    return {
        "event": "update:job",
        "job": {**job, "id": job_id or job["id"], "state": "in progress", "updated_date": updated},
        "before_update": {"state": "new"},
        "webhook_id": 1,
        "sender": {"url": "", "id": 1, "username": "admin", "first_name": "", "last_name": ""},
    }


async def send_all(url: str, bodies: list[tuple[bytes, dict[str, str]]]) -> list[tuple[int, float]]:
    """Every delivery at once, each over a new connection as CVAT's sender makes one per delivery;
    (status, seconds) each, connecting included. A bare HTTP/1.1 client on asyncio streams: the
    deliveries' sender is CVAT, on other cores, and an HTTP library's own CPU (httpx spends about 1 ms a
    request) would be measured as the bridge's on the cores they share here."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")

    async def one(body: bytes, headers: dict[str, str]) -> tuple[int, float]:
        start = time.perf_counter()
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        answer = await reader.read()  # the server closes after its answer (Connection: close)
        writer.close()
        return int(answer.split(b" ", 2)[1]), time.perf_counter() - start

    return await asyncio.gather(*(one(b, h) for b, h in bodies))


def ack_figures(rounds: list[list[tuple[int, float]]]) -> dict:
    """The answers' statuses, and p50 and p99 (ms) of the median round by p99, with every round's p99."""
    p99s = [percentile([s for _, s in answers], 0.99) for answers in rounds]
    middle = sorted(range(len(rounds)), key=p99s.__getitem__)[len(rounds) // 2]
    return {
        "statuses": sorted({status for answers in rounds for status, _ in answers}),
        "p50_ms": round(1000 * percentile([s for _, s in rounds[middle]], 0.5), 1),
        "p99_ms": round(1000 * p99s[middle], 1),
        "p99_ms_each_round": [round(1000 * p, 1) for p in p99s],
    }


def bare_acknowledgement(body: tuple[bytes, dict[str, str]], deliveries: int) -> dict:
    """:func:`ack_figures` of ``deliveries`` copies of ``body`` sent at once to :data:`BARE`, in rounds."""
    import httpx

    from loopback.harness import wait_for
    from loopback.servers import free_port

    def answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE, str(port)], cwd=Path(__file__).resolve().parents[1])
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/docs"), 60, "the bare FastAPI app")
        url = f"http://127.0.0.1:{port}/detect-model-webhook"
        return ack_figures([asyncio.run(send_all(url, [body] * deliveries)) for _ in range(ROUNDS)])
    finally:
        bare.terminate()
        bare.wait()


def annotation_reads(server, settings, labels: list, files: list[Path], polygons: int = 190) -> dict:
    """Seconds to read a job's annotations of ``polygons`` polygons (40 vertices each) from the CVAT
    stand-in: :meth:`quadratseg.cvat_client.Cvat.job_shapes` (the answer's JSON as it is) against the
    plain cvat-sdk call (``get_annotations`` into its models, serialized back to dicts), median of 20
    reads each; and the stand-in's own schema check of that answer (off while the bridge is measured)."""
    import numpy as np

    from quadratseg.cvat_client import Cvat, connect

    project = server.state.add_project("corals-reads", labels)["id"]
    rng = np.random.default_rng(0)
    with connect(settings) as client:
        cvat = Cvat(client)
        (job,) = cvat.task_jobs(cvat.create_task(project, "reads", "test", files)["id"])
        label = server.state.project_labels(project)[0]["id"]
        shapes = [
            {
                "type": "polygon",
                "frame": i % len(files),
                "label_id": label,
                "points": rng.uniform(0, 60, 80).round(1).tolist(),
                "source": "auto",
            }
            for i in range(polygons)
        ]
        with server.state.lock:
            server.state.write_job_annotations(server.state.jobs[job["id"]], "create", {"shapes": shapes})

        def sdk() -> list:
            found = client.jobs.retrieve(job["id"]).get_annotations().shapes
            return [client.api_client.sanitize_for_serialization(shape) for shape in found]

        def median_s(call) -> float:
            call()
            times = []
            for _ in range(20):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            return float(np.median(times))

        ours, plain = median_s(lambda: cvat.job_shapes(job["id"])), median_s(sdk)
        answer = {"shapes": cvat.job_shapes(job["id"]), "tags": [], "tracks": [], "version": 0}
        path = f"/api/jobs/{job['id']}/annotations/"
        check = median_s(lambda: server.checker.check_response("GET", path, 200, answer))
    return {
        "polygons": polygons,
        "json_read_ms": round(1000 * ours, 1),
        "cvat_sdk_read_ms": round(1000 * plain, 1),
        "json_over_cvat_sdk": round(ours / plain, 3),
        "standin_schema_check_ms": round(1000 * check, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default="outputs/demo")
    parser.add_argument("--weights", default="", help="a coral YOLO-seg .pt (default: the demo's)")
    parser.add_argument("--photos", default="", help="a folder of JPEG photos (default: the demo's)")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=20, help="photos per CVAT job")
    parser.add_argument("--jobs", type=int, default=3, help="CVAT jobs opened at once")
    parser.add_argument("--workers", default="1,3", help="worker process counts to measure")
    parser.add_argument(
        "--threads", type=int, default=2, help="job threads per worker process (BRIDGE_WORKERS, default 2)"
    )
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument(
        "--function-cpus",
        default="",
        help="cores (e.g. 0) of the function, the direct call's and the served one's, with as many torch "
        "threads; the bridge, CVAT's stand-in and the servers get the others, as a function on its own "
        "node or GPU leaves the bridge's machine to it (default: everything shares every core)",
    )
    parser.add_argument(
        "--http-processes", default="1,2", help="serving process counts whose acknowledgement is measured"
    )
    args = parser.parse_args()
    demo = Path(args.demo).resolve()
    weights = (
        Path(args.weights).resolve() if args.weights else demo / "runs" / "coralseg" / "weights" / "best.pt"
    )
    photo_dir = (
        Path(args.photos).resolve() if args.photos else demo / "synthetic" / "cvat_exports" / "segmentation"
    )
    photos = sorted(photo_dir.rglob("*.jpg"))
    if not weights.is_file() or not photos:
        raise SystemExit(
            f"no model ({weights}) or no photos under {photo_dir}: run `make demo` first, or pass "
            "--weights and --photos"
        )
    work = isolated_workdir("bench-bridge-")

    from bridge.app import signed_path
    from bridge.store import PostgresJobStore
    from coral_seg_yolo.deploy_as_zip import deploy_as_zip
    from loopback.cvat_standin import CvatServer
    from loopback.harness import (
        BridgeProcess,
        FunctionProcess,
        WorkerProcess,
        bridge_environment,
        unpack_zip,
        wait_for,
    )
    from loopback.servers import PostgresCluster, RedisServer
    from quadratseg.cvat_client import Cvat, connect
    from quadratseg.formats.cvat_labels import labels_to_raw_config
    from quadratseg.labelsets import coral_labels
    from quadratseg.settings import Settings

    frames = [photos[i % len(photos)] for i in range(args.frames)]
    function_dir = unpack_zip(deploy_as_zip(FUNCTION, str(weights), output=str(work / "zip")), work / "fn")
    bodies = work / "bodies.json"
    bodies.write_text(json.dumps([base64.b64encode(p.read_bytes()).decode() for p in frames]))
    function_cpus = {int(c) for c in args.function_cpus.split(",") if c.strip()}
    if function_cpus and not set(os.sched_getaffinity(0)) - function_cpus:
        raise SystemExit(f"--function-cpus {args.function_cpus} leaves no core to the bridge")
    threads = {"OMP_NUM_THREADS": str(len(function_cpus))} if function_cpus else {}
    if function_cpus:  # everything this script starts from now on runs on the other cores
        os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - function_cpus)
    direct = subprocess.run(
        [sys.executable, "-c", DIRECT, str(bodies)],
        cwd=function_dir,
        env={**os.environ, **threads, "PYTHONPATH": str(function_dir)},
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, function_cpus)) if function_cpus else None,
    )
    direct_s = json.loads(direct.stdout.strip().splitlines()[-1])["seconds"]

    server = CvatServer(Path(args.shared_data)).start()
    # the stand-in shares the bridge's cores: its schema checks (100-160 ms for a job's annotations of 190
    # polygons, answered in about 10 ms) would be counted as the bridge's time; the tests keep them on
    server.check_schema = False
    function = FunctionProcess(function_dir, env=threads).start()
    import httpx

    # a deployed function is warm: its first inference (torch's warm-up) is not the bridge's cost,
    # as the direct measurement leaves it out too
    first = json.loads(bodies.read_text())[0]
    httpx.post(function.url, json={"image": first, "threshold": 0.25}, timeout=300).raise_for_status()
    for thread in Path(f"/proc/{function.process.pid}/task").iterdir() if function_cpus else []:
        os.sched_setaffinity(int(thread.name), function_cpus)  # every thread of the warmed-up server
    redis = RedisServer(work / "redis").start()
    postgres = PostgresCluster().start()  # its own folder, open to the postgres user
    secret = "bench"
    settings = Settings(cvat_host=server.url, cvat_username="admin", cvat_password="admin-password")
    # genus and family labels: the demo's model answers families, a genus model genera
    by_name = {label.name: label for label in [*coral_labels(), *coral_labels(level="main_family")]}
    labels = labels_to_raw_config(list(by_name.values()))
    staged = Path(tempfile.mkdtemp(dir=work))
    files = []
    for i, photo in enumerate(frames):
        files.append(staged / f"frame_{i:04d}.jpg")
        files[-1].write_bytes(photo.read_bytes())
    reads = annotation_reads(server, settings, labels, files)
    runs, processes = {}, []

    def env(name: str, database: str) -> dict[str, str]:
        return bridge_environment(
            server.url,
            work / name,
            {FUNCTION: function.url},
            secret,
            BRIDGE_REDIS_URL=redis.url,
            BRIDGE_DATABASE_URL=database,
        )

    def stop_all() -> None:
        while processes:
            processes.pop().stop()

    try:
        for count in [int(n) for n in args.workers.split(",") if n.strip()]:
            project = server.state.add_project(f"corals-{count}", labels)["id"]
            with connect(settings) as client:
                cvat = Cvat(client)
                jobs = []
                for j in range(args.jobs):
                    task = cvat.create_task(project, f"bench-{count}-{j}", "test", files)
                    jobs.extend(cvat.task_jobs(task["id"]))
            database = postgres.new_database(f"bench_{count}")
            redis.flush()
            http = BridgeProcess(env(f"http-{count}", database), args=["--noconsumer"]).start()
            processes.append(http)
            for w in range(count):
                worker = WorkerProcess(env(f"worker-{count}-{w}", database), workers=args.threads)
                processes.append(worker.start())
            url = http.url + signed_path(
                secret, "/detect-model-webhook", model_name=FUNCTION, threshold=0.25, project_id=project
            )
            answers = asyncio.run(send_all(url, [signed(delivery(job, "bench"), secret) for job in jobs]))
            assert all(status == 202 for status, _ in answers), answers

            def ended(http=http) -> list[dict] | None:
                done = http.jobs()
                return (
                    done
                    if len(done) == args.jobs and all(j["state"] not in ("queued", "running") for j in done)
                    else None
                )

            done = wait_for(ended, 1800, f"{args.jobs} detection jobs on {count} worker(s)", every_s=0.5)
            span = max(j["finished"] for j in done) - min(j["started"] for j in done)
            frames_s = sum(j["timings"].get("frames_s", 0.0) for j in done)
            runs[count] = {
                "states": sorted({j["state"] for j in done}),
                "frames_per_min": round(60 * args.jobs * args.frames / span, 1),
                # the frames alone (download, function call, conversion), one job after the other
                "frames_phase_frames_per_min": round(60 * args.jobs * args.frames / frames_s, 1),
                "job_total_s": [j["timings"].get("total_s") for j in done],
                "job_upload_s": [j["timings"].get("upload_s") for j in done],
                "job_frames_s": [j["timings"].get("frames_s") for j in done],
                "job_attempts": [j["attempts"] for j in done],
                "shapes": [j["result"].get("shapes") for j in done],
            }
            stop_all()
        # acknowledgement: the serving processes alone (no worker competes for the cores); fresh store
        project = server.state.add_project("corals-ack", labels)["id"]
        with connect(settings) as client:
            cvat = Cvat(client)
            (job,) = cvat.task_jobs(cvat.create_task(project, "ack", "test", files[:1])["id"])
        acks = {}
        for count in [int(n) for n in args.http_processes.split(",") if n.strip()]:
            database = postgres.new_database(f"bench_ack_{count}")
            http = BridgeProcess(
                env(f"http-ack-{count}", database), args=["--noconsumer", "--http-processes", str(count)]
            ).start()
            processes.append(http)
            url = http.url + signed_path(
                secret, "/detect-model-webhook", model_name=FUNCTION, threshold=0.25, project_id=project
            )
            rounds = []
            for r in range(ROUNDS):
                sent = [
                    signed(delivery(job, f"ack-{count}-{r}-{i}", 10_000_000 + r * 100_000 + i), secret)
                    for i in range(args.deliveries)
                ]
                rounds.append(asyncio.run(send_all(url, sent)))
            stop_all()
            store = PostgresJobStore(database, reconnect_s=5)
            recorded = sum(store.counts().values())
            store.close()
            acks[count] = {**ack_figures(rounds), "recorded": recorded, "sent": ROUNDS * args.deliveries}
        floor = bare_acknowledgement(signed(delivery(job, "bare"), secret), args.deliveries) if acks else None
    finally:
        stop_all()
        function.stop()
        server.stop()
        redis.stop()
        postgres.stop("immediate")
        shutil.rmtree(postgres.folder, ignore_errors=True)
    direct_fpm = 60 * args.frames / direct_s
    result = {
        "model": str(weights),
        "frames_per_job": args.frames,
        "jobs": args.jobs,
        "direct_frames_per_min": round(direct_fpm, 1),
        **{f"bridge_{n}_workers": run for n, run in runs.items()},
        **{f"ratio_{n}_workers": round(run["frames_per_min"] / direct_fpm, 3) for n, run in runs.items()},
        **{
            f"frames_phase_ratio_{n}_workers": round(run["frames_phase_frames_per_min"] / direct_fpm, 3)
            for n, run in runs.items()
        },
        "annotation_reads": reads,
        "deliveries": args.deliveries,
        **{f"ack_{n}_http_processes": ack for n, ack in acks.items()},
        "ack_bare_fastapi": floor,
        **{
            f"ack_{n}_http_processes_over_bare_p99": round(ack["p99_ms"] / floor["p99_ms"], 2)
            for n, ack in acks.items()
            if floor
        },
        "cpu_cores": os.cpu_count(),
        "function_cpus": sorted(function_cpus) or "shared",
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
