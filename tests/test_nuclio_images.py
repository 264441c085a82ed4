"""Every Nuclio function's image can build: its one install resolves for the image's Python and platform.

The install command is read back from each function's ``function.yaml`` (the ``python3.11 -m pip
install ...`` directive) and handed to pip with ``--dry-run --report``, ``--python-version`` of the
base image, ``--platform`` tags of its glibc and architecture and ``--only-binary=:all:`` (the
directive's own), so nothing is built or installed here and a pin that the image's Python cannot
take, or two wheels that write ``cv2/``, fail CI. One pip call per distinct install (the CPU and GPU
images differ only in torch); the resolutions need the package registry and are skipped, with the
reason, only when it cannot be reached.

CPU images take torch from the PyTorch CPU index. Where that index cannot be reached (it is not a
registry these machines reach), the CPU install is resolved with the same torch and torchvision
releases from the registry instead (their ``+cpu`` builds have the same requirements minus the
CUDA wheels), and a warning says that the ``+cpu`` wheels themselves were not checked.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
import warnings
from functools import cache
from pathlib import Path

import pytest

from quadratseg.nuclio import (
    BASE_IMAGE,
    IMAGE_ARCH,
    IMAGE_GLIBC,
    IMAGE_PYTHON,
    TORCH_CPU_INDEX,
    FunctionSpec,
    function_yaml,
)

REPO = Path(__file__).resolve().parents[1]
CV2_WHEELS = {
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
}
PIP_TIMEOUT_S = 420
# pip's words for a registry it could not reach (as opposed to a requirement it could not satisfy)
NETWORK_ERRORS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeoutError",
    "Max retries exceeded",
    "Could not fetch URL",
)


def function_specs(gpu: bool) -> dict[str, FunctionSpec]:
    """Every function the project deploys, built as each ``deploy_as_zip`` builds it (reads no weights)."""
    from coral_seg_yolo.deploy_as_zip import function_spec as seg_spec
    from DINOv2_mmseg.deploy_as_zip import function_spec as mmseg_spec
    from grid_inpainting.deploy_as_zip import build_spec as lama_spec
    from grid_pose_detection.deploy_as_zip import function_spec as pose_spec
    from quadratseg.taxonomy import load_taxonomy

    classes = load_taxonomy().classes("main_family")
    return {
        "pth-yolo-gridcorners": pose_spec("pth-yolo-gridcorners", "best.pt", gpu=gpu),
        "pth-yolo-gridpose": pose_spec("pth-yolo-gridpose", "best.pt", gpu=gpu),
        "pth-lama": lama_spec("pth-lama", "big-lama.pt", gpu=gpu),
        "pth-yolo-coralsegv4": seg_spec("pth-yolo-coralsegv4", classes, "best.pt", gpu=gpu),
        "pth-mmseg-coralscopsegformer": mmseg_spec(
            "pth-mmseg-coralscopsegformer",
            classes,
            "best_segformer.pth",
            "best_segformer_config.py",
            "vit_b_coralscop.pth",
            gpu=gpu,
        ),
    }


FUNCTIONS = [
    pytest.param(name, gpu, id=f"{name}-{'gpu' if gpu else 'cpu'}")
    for gpu in (False, True)
    for name in function_specs(gpu)
]


def pip_directive(document: dict) -> list[str]:
    """The argv of the ``pip install`` RUN directive of a function.yaml (there is exactly one)."""
    runs = [
        shlex.split(d["value"])
        for d in document["spec"]["build"]["directives"]["preCopy"]
        if d["kind"] == "RUN" and " pip " in f" {d['value']} "
    ]
    assert len(runs) == 1, f"expected one pip install directive, got {runs}"
    return runs[0]


def split_directive(argv: list[str]) -> tuple[list[str], list[str]]:
    """(pip options, requirements) of ``python3.11 -m pip install --no-cache-dir OPTIONS... PINS...``."""
    assert argv[:5] == [f"python{IMAGE_PYTHON}", "-m", "pip", "install", "--no-cache-dir"], argv
    options, requirements, rest = [], [], argv[5:]
    while rest:
        arg = rest.pop(0)
        if arg.startswith("-"):
            options.append(arg)
            if arg in ("--extra-index-url", "--index-url") and rest:
                options.append(rest.pop(0))
        else:
            requirements.append(arg)
    return options, requirements


def pyproject_pins() -> dict[str, str]:
    """``name -> version`` of every ``==`` pin in pyproject.toml (dependencies and extras)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    for requirement in [*project["dependencies"], *extras]:
        name, sep, version = requirement.split(";")[0].partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def platform_tags() -> list[str]:
    """What pip on the image accepts: manylinux up to the image's glibc, its legacy aliases, linux."""
    major, minor = IMAGE_GLIBC
    tags = [f"manylinux_{major}_{m}_{IMAGE_ARCH}" for m in range(minor, 4, -1)]
    return [
        *tags,
        f"manylinux2014_{IMAGE_ARCH}",
        f"manylinux2010_{IMAGE_ARCH}",
        f"manylinux1_{IMAGE_ARCH}",
        f"linux_{IMAGE_ARCH}",
    ]


@pytest.mark.parametrize(("name", "gpu"), FUNCTIONS)
def test_image_interpreter_pip_and_pins_agree(name, gpu):
    """Base image, Nuclio runtime and pip directive name one Python; every pin is exact and the project's."""
    spec = function_specs(gpu)[name]
    document = function_yaml(spec)
    build = document["spec"]["build"]
    assert build["baseImage"] == BASE_IMAGE and BASE_IMAGE.startswith(f"python:{IMAGE_PYTHON}-")
    assert document["spec"]["runtime"] == f"python:{IMAGE_PYTHON}"
    options, requirements = split_directive(pip_directive(document))
    assert "--only-binary=:all:" in options  # nothing compiles during the build
    assert requirements == list(spec.requirements())
    pins = {}
    for requirement in requirements:
        package, sep, version = requirement.partition("==")
        assert sep and version and not any(c in version for c in "<>,*;"), (
            f"{requirement} is not an exact pin"
        )
        pins[package.lower()] = version
    cv2 = sorted(CV2_WHEELS & set(pins))
    assert len(cv2) == 1, f"one wheel may write cv2/, the image pins {cv2}"
    project = pyproject_pins()
    for package, version in pins.items():
        if package in project:
            assert version.split("+")[0] == project[package], (
                f"{package}=={version}, pyproject: {project[package]}"
            )
    torch_builds = {pins["torch"].partition("+")[2], pins["torchvision"].partition("+")[2]}
    if gpu:
        assert torch_builds == {""} and TORCH_CPU_INDEX not in options  # PyPI's wheels bundle CUDA
        assert {"kind": "ENV", "value": "NVIDIA_VISIBLE_DEVICES=all"} in build["directives"]["preCopy"]
        assert document["spec"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    else:
        assert torch_builds == {"cpu"}
        assert options[options.index("--extra-index-url") + 1] == TORCH_CPU_INDEX
        assert "resources" not in document["spec"]


def _pip(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@cache
def registry_problem() -> str | None:
    """Why the package registry cannot be reached, or None. Asks for a package no local folder has."""
    try:
        probe = _pip("index", "versions", "ultralytics", "--timeout", "20", "--retries", "1", timeout=120)
    except subprocess.TimeoutExpired:
        return "pip index versions ultralytics timed out"
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["pip index failed"])[-1]
    return None


@cache
def cpu_index_reachable() -> bool:
    code = f"import urllib.request; urllib.request.urlopen({TORCH_CPU_INDEX + '/torch/'!r}, timeout=10)"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@cache
def resolve(options: tuple[str, ...], requirements: tuple[str, ...]) -> tuple[int, str, dict]:
    """pip's dry-run resolution for the image's Python and platform: (return code, output, report)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="quadratseg-nuclio-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
        args += ["--target", str(Path(tmp) / "target")]  # pip < 24 wants it beside --platform
        args += ["--python-version", IMAGE_PYTHON, "--implementation", "cp"]
        for tag in platform_tags():
            args += ["--platform", tag]
        done = _pip(*args, *options, *requirements, timeout=PIP_TIMEOUT_S)
        return (
            done.returncode,
            done.stdout + done.stderr,
            json.loads(report.read_text()) if report.is_file() else {},
        )


@pytest.mark.slow
@pytest.mark.timeout(PIP_TIMEOUT_S + 180)
@pytest.mark.parametrize(("name", "gpu"), FUNCTIONS)
def test_image_requirements_resolve(name, gpu):
    """The image's exact install resolves to wheels for its Python and platform, with one cv2 wheel;
    a GPU image gets PyPI's CUDA torch, a CPU image the +cpu one and no CUDA wheel."""
    problem = registry_problem()
    if problem:
        pytest.skip(f"the package registry cannot be reached ({problem})")
    options, requirements = split_directive(pip_directive(function_yaml(function_specs(gpu)[name])))
    checked_cpu_wheels = gpu or cpu_index_reachable()
    if not checked_cpu_wheels:
        warnings.warn(
            f"{TORCH_CPU_INDEX} cannot be reached: {name}'s CPU image is resolved with PyPI's torch and "
            "torchvision of the same releases; the +cpu wheels themselves are not checked",
            stacklevel=1,
        )
        at = options.index("--extra-index-url")
        options = options[:at] + options[at + 2 :]
        requirements = [
            r.removesuffix("+cpu") if r.startswith(("torch==", "torchvision==")) else r for r in requirements
        ]
    code, output, report = resolve(tuple(options), tuple(requirements))
    if code != 0 and any(marker in output for marker in NETWORK_ERRORS):
        pytest.skip(f"the package registry cannot be reached: {output.strip().splitlines()[-1]}")
    assert code == 0, f"{name}'s image cannot build, pip says:\n{output[-3000:]}"
    installed = {item["metadata"]["name"].lower(): item for item in report["install"]}
    for requirement in requirements:
        package, _, version = requirement.partition("==")
        assert installed[package.lower()]["metadata"]["version"] == version, requirement
    not_wheels = [p for p, item in installed.items() if not item["download_info"]["url"].endswith(".whl")]
    assert not not_wheels, f"would be built from source: {not_wheels}"
    cv2 = sorted(CV2_WHEELS & set(installed))
    assert len(cv2) == 1, f"{name}'s image would install {cv2}, each writing cv2/"
    cuda = sorted(p for p in installed if p.startswith(("nvidia-", "cuda-", "triton")))
    if gpu:
        assert cuda, "the GPU image's torch brings no CUDA libraries"
    elif checked_cpu_wheels:
        assert installed["torch"]["metadata"]["version"].endswith("+cpu")
        assert not cuda, f"the CPU image would install CUDA wheels: {cuda}"


def test_grid_removal_is_never_listed_by_cvat_while_the_detectors_are():
    """CVAT's lambda manager lists a function only when ``metadata.annotations.type`` is one of its
    function kinds (detector, interactor, tracker, reid); pth-lama must not appear as a detector."""
    from grid_inpainting.deploy_as_zip import build_spec

    cvat_kinds = {"detector", "interactor", "tracker", "reid"}
    lama = function_yaml(build_spec("pth-lama", backend="opencv-telea"))
    assert lama["metadata"]["annotations"].get("type") not in cvat_kinds
    assert "spec" not in lama["metadata"]["annotations"]
    detectors = {n: s for n, s in function_specs(gpu=False).items() if n != "pth-lama"}
    assert len(detectors) == 4
    for name, spec in detectors.items():
        assert function_yaml(spec)["metadata"]["annotations"]["type"] == "detector", name
