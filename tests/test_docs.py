"""The documentation site builds with ``mkdocs build --strict`` (a broken link, a page missing from the
navigation or a reference to code that no longer exists fails), and what the pages tell a user to
run exists."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = (
    sorted((REPO / "docs").rglob("*.md"))
    + sorted(p for p in REPO.glob("*/README.md") if not p.parent.name.startswith("."))  # no tool's cache
    + [REPO / "README.md"]
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_the_site_builds_strictly_with_every_guide_and_the_api_reference(site):
    guides = {
        "data_engineering": "create_fiftyone_dataset",
        "grid_pose_detection": "make_template",
        "grid_inpainting": "remove_grid",
        "coral_seg_yolo": "deploy_as_zip",
        "dinov2_mmseg": "DINOv2_mmseg.train",
        "chain": "pipeline.process",
    }
    for page, command in guides.items():
        html = (site / "guides" / page / "index.html").read_text(encoding="utf-8")
        assert command in html, page  # the module's README is in its guide
        assert "../docs/" not in html, page  # README links were rewritten for the site
    core = (site / "reference" / "core" / "index.html").read_text(encoding="utf-8")
    # mkdocstrings rendered the docstrings, not just the headings
    assert "calibrate_miss_pp" in core and "split-conformal" in core.lower()
    assert "Quick start" in (site / "index.html").read_text(encoding="utf-8")  # the README is the home page
    # nothing fetched from elsewhere when the site is opened (field stations are often offline)
    assert not [p for p in site.rglob("*.html") if "fonts.googleapis.com" in p.read_text(encoding="utf-8")]
    assert (site / "weights" / "index.html").is_file() and (site / "training" / "index.html").is_file()


def test_the_weights_page_names_every_file_of_the_catalogue():
    from quadratseg.weights import CATALOGUE, YOLO_SIZES

    text = (REPO / "docs" / "weights.md").read_text(encoding="utf-8")
    sizes = "{" + ",".join(YOLO_SIZES) + "}"
    for entry in CATALOGUE.values():
        name = re.sub(r"yolo11[nslmx]-", f"yolo11{sizes}-", entry.filename)
        assert name in text, entry.filename


def _commands(path: Path):
    """``python -m MODULE ARGS`` (or ``torchrun ... -m MODULE ARGS``) in the page's fenced code blocks
    and inline code (tables included), line continuations joined: (module, the text after it)."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()] + inline
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        match = re.search(r"(?:python -m|torchrun\b.*? -m) ([A-Za-z_][\w.]*)(.*)$", line)
        if match:
            yield match.group(1), match.group(2)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_in_the_docs_exists_with_its_options(page):
    """A module that is gone, or an option its function does not take, is a stale page."""
    for module, args in _commands(page):
        if module.split(".")[0] in {"pip", "venv", "mkdocs", "pytest", "ruff", "torch"}:
            continue
        assert importlib.util.find_spec(module) is not None, f"{page.name}: no module {module}"
        spec = importlib.util.find_spec(module)
        source = Path(spec.origin).read_text(encoding="utf-8")
        called = re.search(r"\brun\((\w+), name=", source)  # the function quadratseg.cli.run hands to fire
        if called is None:
            continue  # a dict of verbs, or a module with its own main(): its existence is what is checked
        name = called.group(1)
        origin = re.search(rf"from ([\w.]+) import {name}\b", source)  # a CLI re-using another's function
        func = getattr(importlib.import_module(origin.group(1) if origin else module), name)
        params = set(inspect.signature(func).parameters)
        hints = inspect.signature(func).parameters
        for flag in re.findall(r"(?<![\w-])--([A-Za-z][\w-]*)", args):
            name = flag.replace("-", "_")
            if name.startswith("no_") and name not in params:
                target = hints.get(name[3:])
                assert target is not None and "bool" in str(target.annotation), (
                    f"{page.name}: python -m {module} has no boolean option --{name[3:]}"
                )
                continue
            assert name in params, f"{page.name}: python -m {module} has no option --{flag}"


def test_the_command_check_reads_every_page_that_shows_commands():
    """The pages checked above are the project's own (no tool's folder) and the command reader finds
    the commands of every module's README, every guide that is not an include, and the main guides."""
    pages = {str(p.relative_to(REPO)) for p in PAGES}
    assert {p for p in pages if p.startswith(".")} == set()
    with_commands = {str(p.relative_to(REPO)) for p in PAGES if list(_commands(p))}
    readmes = {f"{m}/README.md" for m in ("data_engineering", "grid_pose_detection", "grid_inpainting")}
    readmes |= {"coral_seg_yolo/README.md", "DINOv2_mmseg/README.md", "pipeline/README.md", "README.md"}
    guides = {str(p.relative_to(REPO)) for p in (REPO / "docs" / "guides").glob("*.md")}
    guides -= {"docs/guides/chain.md"}  # an include of pipeline/README.md
    assert len(guides) == 5
    assert (
        sorted((readmes | guides | {"docs/training.md", "docs/nuclio.md", "docs/bridge.md"}) - with_commands)
        == []
    )
    flags = re.findall(r"--([\w-]+)", dict(_commands(REPO / "pipeline" / "README.md"))["pipeline.process"])
    assert flags[:2] == ["yolo", "corners"]  # the options the check compares with the function
