"""The floors of the house: core <- modules <- top floor (pipeline, bridge), never an arrow up.

Read from the source itself: every import statement, ``importlib.import_module``/``__import__``
call and every string that names a module by import path (``"pkg.mod"`` or ``"pkg.mod:func"``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = ("data_engineering", "grid_pose_detection", "grid_inpainting", "coral_seg_yolo", "DINOv2_mmseg")
TOP = ("pipeline", "bridge")
# test and demo equipment above the top floor (the CVAT stand-in, the function server, the bridge's
# process harness and demo): installed for development only, never named by the runtime packages
EQUIPMENT = ("loopback",)


def packages_named(path: Path) -> set[str]:
    """Top-level project packages a file imports or names by import path (docstrings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            head = node.value.split(":")[0].split(".")[0]
            if head in MODULES + TOP + EQUIPMENT and ("." in node.value or ":" in node.value):
                found.add(head)
    return found & set(MODULES + TOP + EQUIPMENT + ("quadratseg",))


def files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_the_core_names_no_module_nor_the_top_floor():
    offenders = {
        str(p.relative_to(REPO)): sorted(packages_named(p) - {"quadratseg"}) for p in files("quadratseg")
    }
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize("module", MODULES)
def test_a_module_uses_the_core_only(module):
    offenders = {
        str(p.relative_to(REPO)): sorted(packages_named(p) - {"quadratseg", module}) for p in files(module)
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_check_sees_import_strings(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Mentions pipeline.process in prose."""\nSTAGES = ["grid_pose_detection.demo:stage"]\n'
    )
    assert packages_named(probe) == {"grid_pose_detection"}


# --- one piece of code per idea ---------------------------------------------------------------------

PACKAGES = ("quadratseg", *MODULES, *TOP)
# The packages the write and CLI rules below cover so far (the others still have offenders to convert:
# coral_seg_yolo.train imports coral_seg_yolo.prepare_data's QUADRATSEG_KEY; pipeline and bridge write
# their own temporary files).
RULED = ("quadratseg", "grid_inpainting", "data_engineering")
# Hand-rolled temporary-file-and-rename writers still left in files this rule does not reach yet; every
# other file writes through quadratseg.atomic (a unique temporary name, then one rename).
OWN_WRITERS_LEFT = frozenset(
    {
        "quadratseg/cvat_tasks.py",
        "quadratseg/formats/coralnet.py",
        "quadratseg/formats/cvat_xml.py",
    }
)


def module_constants(path: Path) -> dict[str, object]:
    """A file's module-level UPPER_CASE names bound to a literal collection or string: name -> value
    (sets and frozensets as sorted tuples, so that a tuple and a set of the same items compare equal)."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if name.isupper() and isinstance(value, tuple | list | set | frozenset | str):
                found[name] = tuple(sorted(value)) if isinstance(value, set | frozenset) else value
    return found


def renames(path: Path) -> list[int]:
    """Lines where a file renames one path over another itself: ``os.replace``/``os.rename`` or a
    one-argument ``.replace(x)``/``.rename(x)`` call (``str.replace`` takes two, ``dataclasses.replace``
    keywords)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("replace", "rename"):
            continue
        on_os = isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
        if on_os or (len(node.args) == 1 and not node.keywords):
            lines.append(node.lineno)
    return lines


def cli_entry_points(path: Path) -> set[str] | None:
    """The functions a CLI module's ``if __name__ == "__main__":`` block runs; None for a library module."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return {
                n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in ("run", "__name__")
            }
    return None


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_a_constant_is_defined_in_one_module_of_the_core():
    seen: dict[tuple[str, object], list[str]] = {}
    for path in files("quadratseg"):
        for name, value in module_constants(path).items():
            same = repr(sorted(value)) if isinstance(value, tuple | list) else repr(value)
            seen.setdefault((name, same), []).append(str(path.relative_to(REPO)))
    assert {name: where for (name, _), where in seen.items() if len(where) > 1} == {}


def test_files_are_written_whole_through_quadratseg_atomic():
    checked = [p for package in RULED for p in files(package)]
    assert len(checked) > 50
    offenders = {
        str(p.relative_to(REPO)): renames(p)
        for p in checked
        if p.name != "atomic.py" and str(p.relative_to(REPO)) not in OWN_WRITERS_LEFT
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_a_cli_takes_what_it_shares_from_a_library_module_not_from_another_cli():
    """Outside the demos (which drive every stage), a module imports from a CLI module at most the
    function that CLI runs (a second name for the same verb, like ``grid_inpainting.predict``)."""
    entry = {dotted(p): cli_entry_points(p) for package in PACKAGES for p in files(package)}
    clis = {name: names for name, names in entry.items() if names is not None}
    assert {"grid_inpainting.remove_grid", "coral_seg_yolo.predict"} <= set(clis)
    offenders = {}
    for package in RULED:
        for path in files(package):
            if path.name == "demo.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module in clis and node.module != dotted(path):
                    extra = sorted({a.name for a in node.names} - clis[node.module])
                    if extra:
                        offenders[f"{path.relative_to(REPO)}:{node.lineno}"] = (node.module, extra)
    assert offenders == {}


def test_the_duplicate_checks_see_what_they_look_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nSUFFIXES = {'.png', '.jpg'}\nNAME = 'x'\nlower = (1, 2)\n"
        "def f(tmp, path):\n    tmp.replace(path)\n    os.replace(tmp, path)\n    'a'.replace('a', 'b')\n"
        "if __name__ == '__main__':\n    from quadratseg.cli import run\n\n    run(f, name='probe')\n"
    )
    assert module_constants(probe) == {"SUFFIXES": (".jpg", ".png"), "NAME": "x"}
    assert renames(probe) == [6, 7]
    assert cli_entry_points(probe) == {"f"}
    assert cli_entry_points(REPO / "quadratseg" / "atomic.py") is None


def test_the_bridge_is_the_service_alone():
    """The runtime bridge names none of the test equipment, which is not in the project's wheel but its
    own small distribution (loopback/pyproject.toml) that the development set-ups install."""
    import tomllib
    from fnmatch import fnmatch

    offenders = {str(p.relative_to(REPO)): sorted(packages_named(p)) for p in files("bridge")}
    assert {k: v for k, v in offenders.items() if "loopback" in v} == {}
    assert sorted(p.name for p in (REPO / "bridge").iterdir() if p.name != "__pycache__") == [
        "__init__.py",
        "__main__.py",
        "app.py",
        "convert.py",
        "functions.py",
        "jobqueue.py",
        "serving.py",
        "store.py",
        "urls.py",
        "work.py",
        "worker.py",
    ]
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [pattern for pattern in include if fnmatch("loopback", pattern)]
    equipment = tomllib.loads((REPO / "loopback" / "pyproject.toml").read_text(encoding="utf-8"))
    assert equipment["tool"]["setuptools"]["packages"] == ["loopback", "loopback.cvat_standin"]
    assert (
        "-e ./loopback" in (REPO / "Makefile").read_text()
        and "-e ./loopback" in (REPO / "pixi.toml").read_text()
    )
