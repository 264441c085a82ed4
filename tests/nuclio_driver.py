"""Run a Nuclio handler from its unzipped folder, in a clean subprocess, with nuclio-sdk's test platform.

The subprocess sees only the zip's own code (PYTHONPATH is the ``nuclio/`` folder), so a test proves
the package is self-contained; it returns the handler's answers to the given request bodies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRIVER = """
import json, sys, importlib, nuclio_sdk, nuclio_sdk.test
import main
platform = nuclio_sdk.test.Platform()
answers = []
for body in json.load(open(sys.argv[1])):
    response = platform.call_handler(main.handler, nuclio_sdk.Event(body=body))
    answers.append({"status": response.status_code, "body": json.loads(response.body)})
package = importlib.import_module(sys.argv[2])
print(json.dumps({"answers": answers, "code": package.__file__}))
"""


def call_handler(
    nuclio_dir: Path, bodies: list[str], package: str, env: dict[str, str] | None = None
) -> list[dict]:
    """Answers (status, decoded body) of the handler in ``nuclio_dir`` for each request body."""
    import yaml

    requests = nuclio_dir.parent / "requests.json"
    requests.write_text(json.dumps(bodies))
    # the environment Nuclio gives the function: function.yaml's spec.env (its PYTHONPATH is the folder)
    document = yaml.safe_load((nuclio_dir / "function.yaml").read_text())
    declared = {e["name"]: str(e["value"]) for e in document["spec"].get("env", [])}
    environ = {
        **declared,
        "PYTHONPATH": str(nuclio_dir),
        "PATH": "/usr/bin:/bin",
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(nuclio_dir.parent / "yolo"),
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(requests), package],
        cwd=nuclio_dir,
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["code"].startswith(str(nuclio_dir)), "the handler imported code from outside the zip"
    return out["answers"]
