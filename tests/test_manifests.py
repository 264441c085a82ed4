"""pixi.toml, pyproject.toml and the Makefile describe the same environments and pins."""

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import tomlkit

REPO = Path(__file__).resolve().parents[1]
ENV_EXTRAS = {
    "default": ["data"],
    "data-engineering": ["data"],
    "coral-seg-yolo": ["yolo"],
    "dinov2-mmseg": ["mmseg"],
    "grid-pose": ["grid"],
    "grid-inpainting": ["inpaint"],
    "pipeline": ["pipeline"],
    "ray": ["ray"],
    "bridge": ["bridge"],
    "docs": ["docs"],
    "all": ["all", "dev"],
}
GPU_ENVS = {"coral-seg-yolo", "dinov2-mmseg", "grid-pose", "grid-inpainting", "pipeline", "ray", "bridge"}


def load_toml(path):
    return tomlkit.parse(path.read_text()).unwrap()


@pytest.fixture(scope="module")
def pixi():
    return load_toml(REPO / "pixi.toml")


@pytest.fixture(scope="module")
def pyproject():
    return load_toml(REPO / "pyproject.toml")


@pytest.fixture(scope="module")
def validator(shared_data):
    import jsonschema

    schema = json.loads((shared_data / "pixi" / "schema" / "schema.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.shared_data
def test_schema_validator_tells_valid_from_invalid_official_examples(validator, shared_data):
    examples = shared_data / "pixi" / "schema" / "examples"
    for path in sorted((examples / "valid").glob("*.toml")):
        assert not list(validator.iter_errors(load_toml(path))), path.name
    invalid = sorted((examples / "invalid").glob("*.toml"))
    assert invalid
    for path in invalid:
        assert list(validator.iter_errors(load_toml(path))), path.name


@pytest.mark.shared_data
def test_pixi_manifest_is_valid(validator, pixi):
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(pixi)]
    assert not errors


def features_of(env_spec):
    return env_spec if isinstance(env_spec, list) else env_spec["features"]


def test_every_environment_installs_its_pyproject_extra(pixi, pyproject):
    extras = pyproject["project"]["optional-dependencies"]
    assert set(pixi["environments"]) == set(ENV_EXTRAS)
    for env, spec in pixi["environments"].items():
        installed = []
        for feature in features_of(spec):
            dep = pixi["feature"][feature].get("pypi-dependencies", {}).get("quadratseg")
            if dep is not None:
                assert dep["path"] == "." and dep["editable"] is True
                installed += dep["extras"]
            # the project is the only PyPI dependency: versions live in pyproject alone
            assert set(pixi["feature"][feature].get("pypi-dependencies", {})) <= {"quadratseg"}
        assert installed == ENV_EXTRAS[env], env
        assert all(extra in extras for extra in installed)
        needs_cuda = any(
            "cuda" in pixi["feature"][f].get("system-requirements", {}) for f in features_of(spec)
        )
        assert needs_cuda == (env in GPU_ENVS), env
    assert set(extras) == {
        "data",
        "yolo",
        "mmseg",
        "grid",
        "inpaint",
        "bridge",
        "pipeline",
        "ray",
        "all",
        "docs",
        "dev",
    }


def test_python_versions_agree(pixi, pyproject):
    assert pixi["dependencies"]["python"] == "3.11.*"
    assert pyproject["project"]["requires-python"] == ">=3.11,<3.12"


def requirement_pins(requirements):
    pins = {}
    for req in requirements:
        if req.startswith("quadratseg["):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[A-Za-z0-9_,\-]+\])?==([^;\s]+)", req)
        assert match, f"{req!r} is not pinned with =="
        pins.setdefault(match.group(1).lower(), set()).add(match.group(2))
    return pins


def test_every_requirement_is_pinned_once(pyproject):
    all_pins = requirement_pins(pyproject["project"]["dependencies"])
    for reqs in pyproject["project"]["optional-dependencies"].values():
        for name, versions in requirement_pins(reqs).items():
            all_pins.setdefault(name, set()).update(versions)
    conflicting = {name: v for name, v in all_pins.items() if len(v) > 1}
    assert not conflicting
    assert all_pins["opencv-python"] == all_pins["opencv-python-headless"]  # both write cv2/


def test_makefile_installs_the_same_torch_first(pyproject):
    makefile = (REPO / "Makefile").read_text()
    pins = re.search(r"^TORCH_PINS := (.+)$", makefile, re.M).group(1).split()
    yolo = requirement_pins(pyproject["project"]["optional-dependencies"]["yolo"])
    assert pins == [f"torch=={next(iter(yolo['torch']))}", f"torchvision=={next(iter(yolo['torchvision']))}"]
    torch_line = makefile.index("$(TORCH_PINS)\n")
    project_line = makefile.index("-e '.[$(EXTRAS)]'")
    assert torch_line < project_line


def test_pixi_tasks_run_modules_that_exist(pixi):
    tasks = dict(pixi.get("tasks", {}))
    for feature in pixi["feature"].values():
        tasks.update(feature.get("tasks", {}))
    assert {"demo", "test"} <= set(tasks)
    for name, task in tasks.items():
        cmd = task if isinstance(task, str) else task["cmd"]
        words = shlex.split(cmd)
        if words[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(words[2]) is not None, f"task {name}: no module {words[2]}"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci


def test_wheels_carry_every_config_and_handler(pyproject):
    """Files the code reads from its own package (configs, Nuclio handlers, data) match package-data."""
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    missing = []
    for package in ("quadratseg", "coral_seg_yolo", "grid_pose_detection", "grid_inpainting", "DINOv2_mmseg"):
        root = REPO / package
        carried = {p for g in package_data.get(package, []) for p in root.glob(g)}
        for path in root.rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".md":
                continue
            in_a_package = (path.parent / "__init__.py").is_file() and path.suffix == ".py"
            if not in_a_package and path not in carried:
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
