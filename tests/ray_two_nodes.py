"""A run on a two-node Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``) whose chain actor's
node is removed mid-run; run as a script by tests/test_engine_ray.py (a Ray of its own, apart from
the test session's):

    python tests/ray_two_nodes.py PHOTOS OUT WEIGHTS REPORT

Writes REPORT, a JSON file: the run's summary, the removed node's count, whether the run finished
within the budget and the seconds since the process started (a file, not stdout, which Ray's own
shutdown messages may share).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from functools import partial
from pathlib import Path

from ray._common.utils import reset_ray_address


def chain_worker_node(nodes) -> object | None:
    """The node (of ``nodes``) whose raylet is the parent of a ChainWorker actor's process."""
    import psutil
    from ray._private import ray_constants

    raylets = {node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid: node for node in nodes}
    for pid, node in raylets.items():
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            continue
        for process in children:
            try:
                if any("ChainWorker" in part for part in process.cmdline()):
                    return node
            except psutil.Error:
                continue
    return None


STARTED = time.monotonic()  # the process's start: the budget below leaves the test's timeout (600 s) room
BUDGET_S = 480


def main(photos: str, out: str, weights: str, report: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.process import build_models, resolve_warp_size
    from pipeline.run import EngineOptions, RunConfig, process_folder, run_fingerprint
    from quadratseg.cli import current_settings

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        config = RunConfig(yolo=weights, yolo_imgsz=64, warp_size=256)
        config = RunConfig(**{**config.__dict__, "warp_size": resolve_warp_size(config)})
        settings = current_settings()
        models = build_models(config, settings)
        options = EngineOptions(engine="ray", models_factory=partial(build_models, config, settings))
        result: dict = {}

        def run() -> None:
            result.update(
                process_folder(
                    photos, out, models, run_fingerprint(config), warp_size=(256, 256), engine=options
                )
            )

        runner = threading.Thread(target=run, daemon=True)
        started = STARTED
        runner.start()
        removed = 0
        while runner.is_alive() and time.monotonic() < started + 240:
            done = len(list((Path(out) / "photos").rglob("*.json"))) if (Path(out) / "photos").is_dir() else 0
            node = chain_worker_node(nodes) if done >= 2 else None
            if node is not None:
                cluster.remove_node(node)
                removed += 1
                break
            time.sleep(0.05)
        runner.join(timeout=max(0.0, started + BUDGET_S - time.monotonic()))
        finished = not runner.is_alive()
        Path(report).write_text(
            json.dumps(
                {
                    "summary": result,
                    "removed_nodes": removed,
                    "finished": finished,
                    "seconds": time.monotonic() - started,
                }
            )
        )
        if finished:
            ray.shutdown()
    finally:
        # The cluster goes whatever happened above: its processes, and the record of its address
        # that Ray's default ray.init() would otherwise join later.
        for node in reversed(cluster.list_all_nodes()):  # the worker nodes, then the head
            node.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)
        reset_ray_address()
    if not finished:
        sys.stderr.write(f"the run was still going {BUDGET_S} s after the process started\n")
        os._exit(1)  # the runner thread still waits on a cluster that is gone


if __name__ == "__main__":
    main(*sys.argv[1:5])
