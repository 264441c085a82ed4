"""Demo stage: the bridge for real, on 127.0.0.1, with the models the demo trained.

The CVAT stand-in (``loopback/cvat_standin``, never used with a real CVAT) delivers signed webhooks as
CVAT does; the demo's corner, grid and coral models are packed into their Nuclio zips and served by
``loopback.function_server``; ``python -m bridge`` runs as its own process. An annotator's day on the
raw test photos (:func:`loopback.harness.three_stage_day`): the corner task is opened (pre-annotated),
corrected with the true corners and completed; the bridge makes the warped task and opens it (grid
pre-annotated); the grid is corrected and completed; the bridge makes the grid-free task and
pre-annotates its corals. Then every delivery of the day is sent again (as CVAT's retries or a
manual redelivery would): nothing is done twice.

Grid removal runs in the bridge with OpenCV Telea (``BRIDGE_INPAINT=local:opencv-telea``): the demo
has no LaMa weights. The stand-in needs ``../shared/data`` (CVAT's schema and REST dumps); without
it the stage is skipped with that reason.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

SECRET = "demo-webhook-secret"
SPLIT = "test"
MODELS = {
    "gridcorners": "pth-yolo-gridcorners",
    "gridpose": "pth-yolo-gridpose",
    "coralseg": "pth-yolo-coralsegv4",
}


def build_functions(ctx: Any, root: Path) -> dict[str, Path]:
    """The three zips of the demo's models, unpacked: {function name: nuclio folder}."""
    from coral_seg_yolo.deploy_as_zip import deploy_as_zip as seg_zip
    from grid_pose_detection.demo import DEMO_CONF  # the pose stage's thresholds: briefly trained models
    from grid_pose_detection.deploy_as_zip import deploy_as_zip as pose_zip
    from loopback.harness import unpack_zip

    runs = ctx.out_dir / "runs"
    out = {}
    for task in ("gridcorners", "gridpose"):
        template = runs / task / "kp_template.npy"  # the template the pose stage used
        weights = runs / task / "weights" / "best.pt"
        out[MODELS[task]] = pose_zip(
            MODELS[task], str(weights), str(template), output=str(root / task), box_conf=DEMO_CONF
        )
    weights = runs / "coralseg" / "weights" / "best.pt"
    out[MODELS["coralseg"]] = seg_zip(MODELS["coralseg"], str(weights), output=str(root / "coralseg"))
    return {name: unpack_zip(path, root / f"{name}-unzipped") for name, path in out.items()}


def stage(ctx: Any) -> dict[str, Any]:
    """Run the annotator's day through the bridge and report what it did (module docstring)."""
    from grid_pose_detection.demo import DEMO_KPT_CONF
    from loopback.cvat_standin import CvatServer
    from loopback.harness import (
        BridgeProcess,
        FunctionProcess,
        add_webhooks,
        bridge_environment,
        three_stage_day,
    )
    from quadratseg.cvat_client import connect
    from quadratseg.formats.cvat_labels import labels_to_raw_config
    from quadratseg.labelsets import coral_labels, corner_labels, grid_labels
    from quadratseg.settings import Settings
    from quadratseg.synth.dataset import export_image_path, load_truth

    start = time.perf_counter()
    shared = getattr(ctx, "shared_data", None) or Path(__file__).resolve().parents[2] / "shared" / "data"
    if shared is None or not (shared / "cvat" / "schema.yml").is_file():
        return {"skipped": "the CVAT stand-in needs ../shared/data/cvat (QUADRATSEG_SHARED_DATA): absent"}
    runs = ctx.out_dir / "runs"
    needed = [runs / m / "weights" / "best.pt" for m in MODELS] + [
        runs / t / "kp_template.npy" for t in ("gridcorners", "gridpose")
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        return {"skipped": f"the stages that train the models did not run ({', '.join(missing)} missing)"}
    root = ctx.out_dir / "bridge"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    function_dirs = build_functions(ctx, root)
    truths = [t for t in load_truth(ctx.synthetic_dir) if t["subset"] == SPLIT]
    photos = [
        export_image_path(ctx.synthetic_dir / "cvat_exports" / "corners", SPLIT, t["name"]) for t in truths
    ]
    server = CvatServer(shared).start()
    functions: dict[str, Any] = {}
    bridge = None
    try:
        functions = FunctionProcess.start_all(function_dirs)
        env = bridge_environment(
            server.url,
            root / "state",
            {n: f.url for n, f in functions.items()},
            SECRET,
            BRIDGE_INPAINT="local:opencv-telea",
            BRIDGE_WARP_SIZE=str(truths[0]["warped_size"][0]),
        )
        bridge = BridgeProcess(env, log_path=root / "bridge.log").start()
        state = server.state
        state.add_project("corners", labels_to_raw_config(corner_labels()))
        state.add_project("grid", labels_to_raw_config(grid_labels()))
        state.add_project("corals", labels_to_raw_config(coral_labels(level="main_family")))
        settings = Settings(cvat_host=server.url, cvat_username="admin", cvat_password="admin-password")
        with connect(settings) as client:
            projects = {p["name"]: p["id"] for p in state.projects.values()}
            # the pose stage's keypoint threshold for its briefly trained models
            add_webhooks(
                client, bridge.url, projects, SECRET, {"corners": DEMO_KPT_CONF, "grid": DEMO_KPT_CONF}
            )
            day = three_stage_day(
                server, bridge, client, photos, {t["name"]: t for t in truths}, subset=SPLIT
            )
        first_pass = len(server.deliveries)
        for record in list(server.deliveries):  # every delivery again, as CVAT's retries would send it
            server.deliver(record["webhook_id"], record["payload"], redelivery=True)
        server.wait_deliveries(60)
        jobs = bridge.wait_idle(120)
    finally:  # whatever started is stopped, even when a later start failed
        if bridge is not None:
            bridge.stop()
        for function in functions.values():
            function.stop()
        server.stop()
    answers = [json.loads(d["response"] or "{}").get("status") for d in server.deliveries]
    detect = [j for j in jobs if j["kind"] == "detect"]
    derived = [j for j in jobs if j["kind"] in ("warp", "remove_grid")]
    durations = [d["duration_ms"] for d in server.deliveries]
    metrics = {
        "deliveries": len(server.deliveries),
        "replayed": len(server.deliveries) - first_pass,
        "ack_p50_ms": round(float(np.percentile(durations, 50)), 1),
        "ack_p99_ms": round(float(np.percentile(durations, 99)), 1),
        "frames": sum(j["result"].get("frames", 0) for j in detect),
        "shapes_uploaded": {
            stage: len(day["seen"][f"{stage}_auto"]) for stage in ("corner", "grid", "coral")
        },
        "tasks_created": sum(1 for j in derived if j["result"].get("created")),
        "jobs": len(jobs),
        "failed_jobs": sum(1 for j in jobs if j["state"] == "failed"),
        "duplicates": answers.count("duplicate"),
        "ignored": answers.count("ignored"),
        "schema_violations": len(server.violations),
        "seconds": round(time.perf_counter() - start, 2),
    }
    shapes = metrics["shapes_uploaded"]
    section = ctx.report.section("The bridge: CVAT webhooks on a loopback stand-in (bridge)")
    section.paragraphs.append(
        f"An annotator's day on the {len(photos)} raw {SPLIT} photos through CVAT webhooks, with the "
        "models trained above served from their own Nuclio zips and python -m bridge as a process: "
        f"{metrics['deliveries'] - metrics['replayed']} signed deliveries, answered in "
        f"{metrics['ack_p50_ms']} ms (p50) and {metrics['ack_p99_ms']} ms (p99; CVAT waits 10 s); "
        f"{metrics['frames']} frames pre-annotated in 3 jobs (corners {shapes['corner']}, "
        f"grid {shapes['grid']}, corals {shapes['coral']} shapes); {metrics['tasks_created']} tasks "
        "created (warped, then grid-free with OpenCV Telea: no LaMa weights in the demo). "
        f"Every delivery sent again ({metrics['replayed']}) did nothing twice: "
        f"{metrics['duplicates']} answered duplicate, {metrics['ignored']} ignored (events not due, among "
        f"them the bridge's own uploads), {metrics['jobs']} jobs in all, {metrics['failed_jobs']} failed; "
        f"{metrics['schema_violations']} requests outside CVAT's OpenAPI schema."
    )
    section.tables.append(
        (
            "Bridge jobs",
            ["kind", "state", "frames", "shapes / task", "seconds"],
            [
                [
                    j["kind"],
                    j["state"],
                    j["result"].get("frames", ""),
                    j["result"].get("shapes", j["result"].get("name", "")),
                    j["timings"].get("total_s", ""),
                ]
                for j in sorted(jobs, key=lambda j: j["id"])
            ],
        )
    )
    return metrics
