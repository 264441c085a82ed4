"""Nuclio function packaging shared by every module's ``deploy_as_zip``.

A function is a ``nuclio/`` folder with ``function.yaml`` (CVAT's annotations: name, type,
framework, label ``spec``), ``main.py`` (``init_context`` loads the model once into
``context.user_data``; ``handler`` serves one request), the weights under standard names and
the project code the handler imports (``quadratseg/`` and the module's package), zipped as
``nuclio.zip``. Deploy with ``nuctl deploy`` (docs/nuclio.md gives the command for each function).

The image: every function builds on ``python:3.11-slim-bookworm`` (:data:`BASE_IMAGE`), whose
interpreter is the one the pins need (numpy 2.4 needs Python >= 3.11), and installs with that
interpreter's own pip (``python3.11 -m pip``), wheels only, in one resolution. A GPU image takes
PyPI's torch, whose wheels bundle CUDA (the host needs only the NVIDIA driver and container
runtime); a CPU image takes the ``+cpu`` torch wheels from :data:`TORCH_CPU_INDEX`.
``tests/test_nuclio_images.py`` resolves every function's requirement set for that Python and
platform without installing, so a function whose image cannot build fails CI.

Request and response helpers (:func:`decode_image_b64`, :func:`json_response`) live here too, so
every handler speaks the same contract.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.atomic import atomic_write_bytes
from quadratseg.errors import QuadratsegError
from quadratseg.settings import FUNCTION_BODY_LIMIT

REPO_PACKAGES_ROOT = Path(__file__).resolve().parent.parent

# The image of every function (CPU and GPU alike): its python and pip are the ones the pins need.
IMAGE_PYTHON = "3.11"
BASE_IMAGE = f"python:{IMAGE_PYTHON}-slim-bookworm"
# What the image's pip accepts: Debian 12's glibc, x86_64 (the resolution test asks for these tags).
IMAGE_GLIBC = (2, 36)
IMAGE_ARCH = "x86_64"
# CPU images take torch and torchvision as ``+cpu`` wheels from here (PyPI's Linux wheels are CUDA builds).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_CPU_WHEELS = ("torch", "torchvision")

# What every function image installs (the project's pins); modules add their framework.
BASE_PIP = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    # One cv2 distribution: ultralytics, simple-lama-inpainting and mmengine require opencv-python,
    # so a headless wheel beside it would write cv2/ a second time (pyproject pins both only because
    # fiftyone, which no image installs, wants the headless one). Same version as pyproject.toml.
    "opencv-python==4.14.0.94",
    "numpy==2.4.6",
    "pillow==13.0.0",
    "simplejpeg==1.9.0",
    "scipy==1.17.1",
    "shapely==2.2.0",
    "PyYAML==6.0.3",
    "python-dotenv==1.2.4",
)


@dataclass
class FunctionSpec:
    """What a Nuclio function for CVAT needs to be built.

    Attributes:
        name: function name (e.g. ``pth-lama``), also the image name suffix.
        display_name: name CVAT shows.
        description: one line.
        labels: CVAT label spec (list of dicts, see :func:`quadratseg.formats.cvat_labels.label_to_raw`).
        main_py: path of the handler module, written as ``nuclio/main.py``.
        files: extra files, ``{path inside nuclio/: source path or bytes}`` (weights, templates).
        packages: the project packages the handler imports, copied as sources.
        pip: pip requirements installed in the image.
        gpu: request an NVIDIA GPU and a CUDA base image.
        kind: CVAT's function type (``detector``), or None for a service CVAT must not list (the
            grid removal, called by the bridge and the pipeline with keypoints CVAT cannot send).
    """

    name: str
    display_name: str
    description: str
    labels: list[dict[str, Any]]
    main_py: Path
    files: dict[str, Path | bytes] = field(default_factory=dict)
    packages: tuple[str, ...] = ("quadratseg",)
    pip: tuple[str, ...] = ()
    gpu: bool = False
    kind: str | None = "detector"
    framework: str = "pytorch"
    event_timeout: str = "120s"
    env: dict[str, str] = field(default_factory=dict)

    def requirements(self) -> tuple[str, ...]:
        """The exact pins the image installs: :attr:`pip`, torch and torchvision as ``+cpu`` wheels
        unless ``gpu``.

        >>> spec = FunctionSpec("f", "F", "", [], Path("main.py"), pip=("torch==2.14.1", "numpy==2.4.6"))
        >>> spec.requirements()
        ('torch==2.14.1+cpu', 'numpy==2.4.6')
        """
        if self.gpu:
            return tuple(self.pip)
        pins = []
        for requirement in self.pip:
            name, sep, version = requirement.partition("==")
            if sep and name.strip().lower() in _CPU_WHEELS and "+" not in version:
                requirement = f"{name}=={version.strip()}+cpu"
            pins.append(requirement)
        return tuple(pins)

    def pip_options(self) -> tuple[str, ...]:
        """pip's options for the image: wheels only (nothing compiles in the build), the CPU torch index."""
        options = ("--only-binary=:all:",)
        return options if self.gpu else (*options, "--extra-index-url", TORCH_CPU_INDEX)

    def pip_command(self) -> list[str]:
        """The image's one install command, run by the image's own interpreter."""
        return [
            f"python{IMAGE_PYTHON}",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            *self.pip_options(),
            *self.requirements(),
        ]


def function_yaml(spec: FunctionSpec) -> dict[str, Any]:
    """The ``function.yaml`` document, shaped like CVAT's own serverless functions."""
    directives: list[dict[str, str]] = []
    if spec.gpu:
        # the NVIDIA container runtime exposes the driver; torch's wheels bring the CUDA libraries
        directives += [
            {"kind": "ENV", "value": "NVIDIA_VISIBLE_DEVICES=all"},
            {"kind": "ENV", "value": "NVIDIA_DRIVER_CAPABILITIES=compute,utility"},
        ]
    directives += [
        {
            "kind": "RUN",
            "value": "apt-get update && apt-get install -y --no-install-recommends "
            "libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*",
        },
        {"kind": "WORKDIR", "value": "/opt/nuclio"},
    ]
    if spec.pip:
        directives.append({"kind": "RUN", "value": shlex.join(spec.pip_command())})
    document: dict[str, Any] = {
        "metadata": {
            "name": spec.name,
            "namespace": "cvat",
            # CVAT lists a function only with a ``type`` it knows (detector, interactor, tracker, reid);
            # a service for other callers (kind None) carries no CVAT annotations at all
            "annotations": {"name": spec.display_name}
            if spec.kind is None
            else {
                "name": spec.display_name,
                "type": spec.kind,
                "framework": spec.framework,
                "spec": json.dumps(spec.labels, indent=2),
            },
        },
        "spec": {
            "description": spec.description,
            "runtime": f"python:{IMAGE_PYTHON}",
            "handler": "main:handler",
            "eventTimeout": spec.event_timeout,
            "env": [{"name": k, "value": v} for k, v in {"PYTHONPATH": "/opt/nuclio", **spec.env}.items()],
            "build": {
                "image": f"cvat.{spec.name.replace('-', '.')}",
                "baseImage": BASE_IMAGE,
                "directives": {"preCopy": directives},
            },
            "triggers": {
                "myHttpTrigger": {
                    "numWorkers": 1 if spec.gpu else 2,
                    "kind": "http",
                    "workerAvailabilityTimeoutMilliseconds": 10000,
                    "attributes": {"maxRequestBodySize": FUNCTION_BODY_LIMIT},  # 1920 px images in base64
                }
            },
            "platform": {
                "attributes": {
                    "restartPolicy": {"name": "always", "maximumRetryCount": 3},
                    "mountMode": "volume",
                }
            },
        },
    }
    if spec.gpu:
        document["spec"]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    return document


def _package_files(package: str) -> dict[str, Path]:
    root = REPO_PACKAGES_ROOT / package
    if not (root / "__init__.py").is_file():
        raise QuadratsegError(f"cannot package {package!r}: {root} is not a Python package")
    files = {}
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix in {".py", ".csv", ".json", ".yaml", ".npy"}
        ):
            files[f"{package}/{path.relative_to(root).as_posix()}"] = path
    return files


def write_nuclio_zip(spec: FunctionSpec, output: str | Path) -> Path:
    """Write ``nuclio.zip`` (``nuclio/function.yaml``, ``nuclio/main.py``, code, weights); atomic.

    Raises:
        QuadratsegError: a listed file (weights, template) does not exist.
    """
    import yaml

    output = Path(output)
    if output.suffix != ".zip":
        output = output / "nuclio.zip"
    for arcname, source in spec.files.items():
        if isinstance(source, Path) and not source.is_file():
            raise QuadratsegError(f"cannot package {arcname}: {source} does not exist")
    if not spec.main_py.is_file():
        raise QuadratsegError(f"handler {spec.main_py} does not exist")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "nuclio/function.yaml", yaml.safe_dump(function_yaml(spec), sort_keys=False, width=120)
        )
        archive.write(spec.main_py, "nuclio/main.py")
        for package in spec.packages:
            for arcname, path in _package_files(package).items():
                archive.write(path, f"nuclio/{arcname}")
        for arcname, source in spec.files.items():
            if isinstance(source, bytes):
                archive.writestr(f"nuclio/{arcname}", source)
            else:
                archive.write(source, f"nuclio/{arcname}")
    return atomic_write_bytes(output, buffer.getvalue())


def decode_image_b64(data: str) -> np.ndarray:
    """A base64 image (CVAT's ``image`` field) -> uint8 RGB (H, W, 3), EXIF orientation applied.

    The one request decoder is :func:`quadratseg.images.decode_image_b64`; this name stays for handlers.

    Raises:
        ValueError: not a base64-encoded image (handlers answer it with status 400).
    """
    from quadratseg.images import decode_image_b64 as decode

    return decode(data)


def encode_image_b64(image_rgb: np.ndarray, fmt: str = "PNG") -> str:
    """uint8 RGB (H, W, 3) -> base64 PNG (lossless) or JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_body(body: Any) -> dict[str, Any]:
    """The request body as a dict (Nuclio passes bytes, str or an already decoded dict)."""
    if isinstance(body, dict):
        return body
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8")
    try:
        data = json.loads(body)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the request body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


def parse_image_request(body: Any, default_threshold: float) -> tuple[dict[str, Any], np.ndarray, float]:
    """A detector request: the body as a dict, its ``image`` as uint8 RGB (H, W, 3), its ``threshold``.

    Raises:
        ValueError: the body is not a JSON object, has no ``image``, or a value does not parse
            (handlers answer it with status 400).
    """
    data = parse_body(body)
    if "image" not in data:
        raise ValueError("the request needs 'image' (base64)")
    try:
        threshold = float(data.get("threshold", default_threshold))
    except (TypeError, ValueError):
        raise ValueError(f"'threshold' must be a number, got {data.get('threshold')!r}") from None
    return data, decode_image_b64(data["image"]), threshold


def _int_array_json(values: np.ndarray) -> str:
    """A 1-D integer array as the JSON text ``json.dumps(values.tolist())`` gives, written fast: a
    detector's flat mask bitmap is millions of 0/1 digits, which the json module encodes one by one."""
    a = np.asarray(values).ravel().astype(np.int64, copy=False)
    digit = (a >= 0) & (a <= 9)
    n_digits = len(a) if digit.all() else int(np.argmin(digit))  # leading single-digit run
    parts = []
    if n_digits:
        text = np.empty(3 * n_digits - 2, dtype=np.uint8)
        text[0::3] = a[:n_digits] + ord("0")
        text[1::3] = ord(",")
        text[2::3] = ord(" ")
        parts.append(text.tobytes().decode("ascii"))
    if n_digits < len(a):
        parts.append(", ".join(map(str, a[n_digits:].tolist())))
    return "[" + ", ".join(parts) + "]"


def dumps(payload: Any) -> str:
    """``json.dumps`` that also takes integer numpy arrays (written as lists, fast) and numpy scalars.

    The text equals ``json.dumps`` of the same payload with every array turned into a list.

    Examples:
        >>> dumps([{"mask": np.array([0, 1, 1, 0, 12, 3]), "n": np.int64(2)}])
        '[{"mask": [0, 1, 1, 0, 12, 3], "n": 2}]'
    """
    import secrets

    arrays: list[np.ndarray] = []
    marker = f"array-{secrets.token_hex(6)}-"  # a placeholder no payload string can hold by chance

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray) and obj.dtype.kind in "iub":
            arrays.append(obj)
            return f"\x00{marker}{len(arrays) - 1}\x00"
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return float(obj)
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    text = json.dumps(payload, default=default)
    if not arrays:
        return text
    pieces = text.split(f'"\\u0000{marker}')
    out = [pieces[0]]
    for piece in pieces[1:]:
        index, rest = piece.split('\\u0000"', 1)
        out.append(_int_array_json(arrays[int(index)]))
        out.append(rest)
    return "".join(out)


def json_response(context: Any, payload: Any, status_code: int = 200) -> Any:
    """A Nuclio JSON response (:func:`dumps`: numpy arrays allowed)."""
    return context.Response(
        body=dumps(payload), headers={}, content_type="application/json", status_code=status_code
    )
