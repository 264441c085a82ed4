"""mkdocs hooks: the repository's READMEs are pages of the site, written once.

A page holding the line ``--8<-- "<folder>/README.md"`` (or ``--8<-- "README.md"``) gets that README
in its place. The README's links are relative to its own folder (``../docs/nuclio.md``,
``configs``), so each is rewritten for the page: a file of ``docs/`` becomes that page, a module
README becomes its guide, anything else (source files, configs) a link to the repository. The
build stays ``--strict``: a link that still points nowhere fails it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

INCLUDE = re.compile(r'^--8<-- "((?:[A-Za-z0-9_]+/)?README\.md)"$', re.M)
LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)")
# module README -> its guide page
GUIDES = {
    "data_engineering": "guides/data_engineering.md",
    "grid_pose_detection": "guides/grid_pose_detection.md",
    "grid_inpainting": "guides/grid_inpainting.md",
    "coral_seg_yolo": "guides/coral_seg_yolo.md",
    "DINOv2_mmseg": "guides/dinov2_mmseg.md",
    "pipeline": "guides/chain.md",
}


def site_link(target: str, readme_folder: str, page_uri: str, repo_url: str) -> str:
    """A README link ``target`` (relative to ``readme_folder``) as seen from the page ``page_uri``.

    Example:
        >>> site_link("../docs/nuclio.md#pth-lama", "grid_inpainting", "guides/grid_inpainting.md", "R")
        '../nuclio.md#pth-lama'
        >>> site_link("pipeline/README.md", "", "index.md", "R")
        'guides/chain.md'
        >>> site_link("configs", "DINOv2_mmseg", "guides/dinov2_mmseg.md", "R")
        'R/tree/main/DINOv2_mmseg/configs'
    """
    path, _, anchor = target.partition("#")
    repo_path = posixpath.normpath(posixpath.join(readme_folder, path))
    folder = posixpath.dirname(repo_path)
    if repo_path.startswith("docs/"):
        site_path = repo_path[len("docs/") :]
    elif posixpath.basename(repo_path) == "README.md" and folder in GUIDES:
        site_path = GUIDES[folder]
    else:
        return f"{repo_url}/tree/main/{repo_path}" + (f"#{anchor}" if anchor else "")
    relative = posixpath.relpath(site_path, posixpath.dirname(page_uri) or ".")
    return relative + (f"#{anchor}" if anchor else "")


def on_page_markdown(markdown, page, config, files):
    """Put the README named by an include line in its place, its links rewritten for the page."""
    match = INCLUDE.search(markdown)
    if match is None:
        return markdown
    name = match.group(1)
    readme = (Path(config["config_file_path"]).parent / name).read_text(encoding="utf-8")
    folder = posixpath.dirname(name)
    repo = config["repo_url"].rstrip("/")
    readme = LINK.sub(lambda m: f"]({site_link(m.group(1), folder, page.file.src_uri, repo)})", readme)
    return markdown[: match.start()] + readme + markdown[match.end() :]
