"""A CVAT project as tasks of frames with shapes, whatever it came from.

Three sources give the same :class:`ProjectData`:
- a "CVAT for images 1.1" export (zip, folder, or the XML file beside its ``images/``):
  :func:`project_from_xml_export`;
- a CVAT project backup zip (``project.json``, ``task_N/{task.json, annotations.json, data/}``):
  :func:`project_from_backup` (and :func:`write_project_backup`, which writes that layout);
- a live server through cvat-sdk: :mod:`quadratseg.cvat_client`.

Images are read lazily (``FrameData.load_bytes``), so a project is described before any
image is fetched, and bad labels are found before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from quadratseg.errors import CvatFormatError, QuadratsegError
from quadratseg.formats.cvat_labels import LabelSpec, label_to_raw, labels_from_raw_config
from quadratseg.formats.cvat_rest import shape_from_rest
from quadratseg.formats.cvat_xml import CvatDocument, Shape, read_cvat_xml
from quadratseg.images import IMAGE_SUFFIXES


@dataclass
class FrameData:
    """One image of a task: its frame number, file name, size and shapes (pixel coordinates)."""

    frame: int
    name: str
    width: int
    height: int
    shapes: list[Shape]
    load_bytes: Callable[[], bytes]


@dataclass
class TaskData:
    """A CVAT task: id, name, subset, status, last update, and its frames."""

    id: int
    name: str
    subset: str = ""
    status: str = "completed"
    updated: str = ""
    frames: list[FrameData] = field(default_factory=list)

    def fingerprint(self) -> str:
        """The task's content version: CVAT's update time if known, else a hash of the annotations."""
        if self.updated:
            return f"updated:{self.updated}"
        digest = hashlib.sha1()
        for f in self.frames:
            digest.update(f"{f.frame}|{f.name}|{f.width}|{f.height}".encode())
            for s in f.shapes:
                # z_order: which colony is on top where two overlap
                digest.update(
                    f"{s.type}|{s.label}|{s.outside}|{s.z_order}|{sorted(s.attributes.items())}".encode()
                )
                digest.update(np.round(np.asarray(s.points, dtype=np.float64), 2).tobytes())
                digest.update(str(s.rle).encode())
                for e in s.elements:
                    digest.update(f"{e.label}|{e.outside}".encode() + np.round(e.points, 2).tobytes())
        return "sha1:" + digest.hexdigest()


@dataclass
class ProjectData:
    """A CVAT project: name, labels, tasks."""

    name: str
    labels: list[LabelSpec]
    tasks: list[TaskData]
    source: str = ""


# ----------------------------------------------------------------------------- zip safety


def check_zip_members(archive: zipfile.ZipFile, where: str) -> None:
    """Refuse archives whose members could land outside the extraction folder.

    Raises:
        QuadratsegError: a member path is absolute, has a drive letter, or climbs with ``..``;
            or a member is a symbolic link.
    """
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise QuadratsegError(
                f"{where} contains the unsafe path {name!r} (absolute or with '..'); refusing to read it. "
                "Re-export the project from CVAT, or repack the archive with relative paths."
            )
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise QuadratsegError(f"{where} contains a symbolic link {name!r}; refusing to read it")


def _zip_reader(path: Path, member: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)

    return read


def _file_reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


# ----------------------------------------------------------------------------- XML exports


def _frames_from_document(
    doc: CvatDocument, image_lookup: Callable[[str, str], Callable[[], bytes]]
) -> dict[int, list[FrameData]]:
    """Frames per task; frame numbers count within the task (a project export numbers images globally)."""
    by_task: dict[int, list[FrameData]] = {}
    for image in sorted(doc.images, key=lambda im: im.id):
        task_id = image.task_id if image.task_id is not None else 0
        frames = by_task.setdefault(task_id, [])
        frames.append(
            FrameData(
                len(frames),
                image.name,
                image.width,
                image.height,
                image.shapes,
                image_lookup(image.name, image.subset),
            )
        )
    return by_task


def project_from_xml_export(path: str | Path, project_name: str = "") -> ProjectData:
    """Read a "CVAT for images 1.1" export: a zip, a folder, or the annotations.xml itself.

    The project name comes from the export; ``project_name`` names task exports (which have none).
    Images are looked up as ``images/<subset>/<name>``, ``images/<name>`` or ``<name>`` beside
    the XML. Task subsets come from the export; XML exports carry no task status, so every
    task counts as completed.
    """
    path = Path(path)
    if not path.exists():
        raise QuadratsegError(
            f"{path} does not exist; pass a CVAT export zip, its folder or its annotations.xml"
        )
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            check_zip_members(archive, str(path))
            names = set(archive.namelist())
            xml_members = [n for n in names if PurePosixPath(n).name == "annotations.xml"]
            if len(xml_members) != 1:
                raise QuadratsegError(
                    f"{path}: expected one annotations.xml in the zip, found {len(xml_members)}"
                )
            xml_bytes = archive.read(xml_members[0])
        root = posixpath.dirname(xml_members[0])
        tmp_xml = _cache_xml(path, xml_bytes)
        doc = read_cvat_xml(tmp_xml)

        def lookup(name: str, subset: str) -> Callable[[], bytes]:
            for candidate in (f"images/{subset}/{name}", f"images/{name}", name):
                member = posixpath.join(root, candidate) if root else candidate
                if member in names:
                    return _zip_reader(path, member)
            return _missing(name, str(path))

    else:
        xml_path = path / "annotations.xml" if path.is_dir() else path
        folder = xml_path.parent
        doc = read_cvat_xml(xml_path)

        def lookup(name: str, subset: str) -> Callable[[], bytes]:
            for candidate in (folder / "images" / subset / name, folder / "images" / name, folder / name):
                if candidate.is_file():
                    return _file_reader(candidate)
            return _missing(name, str(folder))

    frames = _frames_from_document(doc, lookup)
    tasks = []
    known = {t.id: t for t in doc.tasks}
    for task_id, task_frames in sorted(frames.items()):
        info = known.get(task_id)
        name = info.name if info else f"task_{task_id}"
        subset = info.subset if info else ""
        if not subset:
            subsets = {img.subset for img in doc.images if (img.task_id or 0) == task_id}
            subset = next(iter(subsets)) if len(subsets) == 1 else ""
        tasks.append(TaskData(task_id, name, subset.lower(), "completed", "", task_frames))
    return ProjectData(doc.project_name or project_name or path.stem, doc.labels, tasks, f"xml:{path}")


def _missing(name: str, where: str) -> Callable[[], bytes]:
    def fail() -> bytes:
        raise FileNotFoundError(f"image {name!r} is listed in the annotations but missing from {where}")

    return fail


def _cache_xml(zip_path: Path, xml_bytes: bytes) -> Path:
    import tempfile

    digest = hashlib.sha1(xml_bytes).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"quadratseg-xml-{digest}.xml"
    if not target.exists():
        from quadratseg.atomic import atomic_write_bytes

        atomic_write_bytes(target, xml_bytes)  # two readers of one export never share a temporary name
    return target


# ----------------------------------------------------------------------------- project backups


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _backup_frames(archive: zipfile.ZipFile, prefix: str) -> list[tuple[str, str, int, int]]:
    """(member, name, width, height) per frame, in frame order, from manifest.jsonl or sorted names."""
    names = archive.namelist()
    manifest = f"{prefix}data/manifest.jsonl"
    if manifest in names:
        frames = []
        for line in archive.read(manifest).decode("utf-8").splitlines():
            entry = json.loads(line) if line.strip() else {}
            if "name" in entry:
                file_name = entry["name"] + entry.get("extension", "")
                frames.append(
                    (
                        f"{prefix}data/{file_name}",
                        file_name,
                        int(entry.get("width", 0)),
                        int(entry.get("height", 0)),
                    )
                )
        return frames
    images = sorted(
        (
            n
            for n in names
            if n.startswith(f"{prefix}data/") and PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
        ),
        key=_natural_key,
    )
    return [(n, n[len(f"{prefix}data/") :], 0, 0) for n in images]


def project_from_backup(path: str | Path) -> ProjectData:
    """Read a CVAT project backup zip without a server.

    Raises:
        QuadratsegError: unsafe member paths (``..``, absolute), no ``project.json``, or
            unreadable task files; the message names the archive member.
    """
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise QuadratsegError(
            f"{path} is not a zip file; pass a CVAT project backup (project_<name>_backup_*.zip)"
        )
    with zipfile.ZipFile(path) as archive:
        check_zip_members(archive, str(path))
        names = set(archive.namelist())
        if "project.json" not in names:
            raise QuadratsegError(f"{path} has no project.json: it is not a CVAT project backup")
        project = _read_json(archive, "project.json", path)
        labels = labels_from_raw_config(project.get("labels", []))
        label_names = {lab.get("id"): lab["name"] for lab in project.get("labels", []) if "id" in lab}
        task_dirs = sorted(
            {n.split("/", 1)[0] for n in names if re.match(r"^task_\d+/", n)}, key=_natural_key
        )
        tasks = []
        for task_dir in task_dirs:
            task_json = _read_json(archive, f"{task_dir}/task.json", path)
            annotations = _read_json(archive, f"{task_dir}/annotations.json", path)
            frames_info = _backup_frames(archive, f"{task_dir}/")
            shapes_by_frame: dict[int, list[Shape]] = {}
            jobs = annotations if isinstance(annotations, list) else [annotations]
            for job in jobs:
                for raw in job.get("shapes", []):
                    where = f"{path.name}:{task_dir}/annotations.json, frame {raw.get('frame')}"
                    shapes_by_frame.setdefault(int(raw.get("frame", 0)), []).append(
                        shape_from_rest(raw, label_names, None, where)
                    )
            task_id = int(task_dir.split("_", 1)[1])
            # frames deleted in CVAT stay in the task's data; its backup lists them (data.deleted_frames)
            deleted = {int(n) for n in (task_json.get("data") or {}).get("deleted_frames") or []}
            frames = [
                FrameData(i, name, w, h, shapes_by_frame.get(i, []), _zip_reader(path, member))
                for i, (member, name, w, h) in enumerate(frames_info)
                if i not in deleted
            ]
            extra = sorted(set(shapes_by_frame) - set(range(len(frames_info))))
            if extra:
                raise QuadratsegError(
                    f"{path.name}:{task_dir} has annotations on frame(s) {extra[:5]} "
                    f"but only {len(frames_info)} images"
                )
            tasks.append(
                TaskData(
                    task_id,
                    str(task_json.get("name", task_dir)),
                    str(task_json.get("subset", "") or "").lower(),
                    str(task_json.get("status", "completed")),
                    str(task_json.get("updated_date", "") or ""),
                    frames,
                )
            )
    return ProjectData(str(project.get("name", path.stem)), labels, tasks, f"backup:{path}")


def _read_json(archive: zipfile.ZipFile, member: str, path: Path) -> Any:
    try:
        return json.loads(archive.read(member).decode("utf-8"))
    except KeyError:
        raise QuadratsegError(f"{path.name}: missing {member}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuadratsegError(f"{path.name}: {member} is not valid JSON ({exc})") from None


def _shape_to_backup(shape: Shape, frame: int) -> dict[str, Any]:
    """A shape as a backup's annotations.json entry (labels and attributes by name)."""
    from quadratseg.formats.cvat_rest import SHAPE_TO_REST, rest_points

    raw: dict[str, Any] = {
        "type": SHAPE_TO_REST[shape.type],
        "occluded": shape.occluded,
        "outside": shape.outside,
        "z_order": shape.z_order,
        "rotation": 0.0,
        "points": rest_points(shape),
        "frame": frame,
        "group": shape.group,
        "source": shape.source,
        "attributes": [{"spec": k, "value": v} for k, v in shape.attributes.items()],
        "label": shape.label,
        "elements": [_shape_to_backup(e, frame) for e in shape.elements],
    }
    return raw


def write_project_backup(project: ProjectData, path: str | Path) -> Path:
    """Write ``project`` in CVAT's project backup layout (images read through ``load_bytes``).

    The zip is written next to ``path`` and renamed into place when complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(
                "project.json",
                json.dumps(
                    {
                        "name": project.name,
                        "bug_tracker": "",
                        "status": "annotation",
                        "version": "1.0",
                        "labels": [label_to_raw(lab) for lab in project.labels],
                    }
                ),
            )
            for task in project.tasks:
                prefix = f"task_{task.id}/"
                archive.writestr(
                    prefix + "task.json",
                    json.dumps(
                        {
                            "name": task.name,
                            "subset": task.subset,
                            "status": task.status,
                            "version": "1.0",
                            "bug_tracker": "",
                            "labels": [],
                            "data": {
                                "start_frame": 0,
                                "stop_frame": max(len(task.frames) - 1, 0),
                                "image_quality": 95,
                                "storage_method": "file_system",
                                "storage": "local",
                                "sorting_method": "predefined",
                                "chunk_type": "imageset",
                            },
                            "jobs": [
                                {
                                    "start_frame": 0,
                                    "stop_frame": max(len(task.frames) - 1, 0),
                                    "status": task.status,
                                }
                            ],
                        }
                    ),
                )
                shapes = [_shape_to_backup(s, f.frame) for f in task.frames for s in f.shapes]
                archive.writestr(
                    prefix + "annotations.json",
                    json.dumps([{"version": 0, "tags": [], "shapes": shapes, "tracks": []}]),
                )
                manifest = [json.dumps({"version": "1.1"}), json.dumps({"type": "images"})]
                for i, f in enumerate(sorted(task.frames, key=lambda fr: fr.frame)):
                    if f.frame != i:
                        raise QuadratsegError(
                            f"task {task.name}: frames must be numbered 0..N-1, got {f.frame} at {i}"
                        )
                    stem, suffix = posixpath.splitext(f.name)
                    manifest.append(
                        json.dumps({"name": stem, "extension": suffix, "width": f.width, "height": f.height})
                    )
                    archive.writestr(prefix + "data/" + f.name, f.load_bytes())
                archive.writestr(prefix + "data/manifest.jsonl", "\n".join(manifest) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def iter_frames(project: ProjectData) -> Iterable[tuple[TaskData, FrameData]]:
    """Every (task, frame) pair of a project, task by task."""
    for task in project.tasks:
        for frame in task.frames:
            yield task, frame


def check_labels_defined(project: ProjectData) -> None:
    """Raise when shapes use labels the project does not define (a corrupt export)."""
    known = {lab.name for lab in project.labels}
    used = {s.label for _, f in iter_frames(project) for s in f.shapes if s.label}  # "": dropped later
    unknown = sorted(used - known)
    if known and unknown:
        raise CvatFormatError(
            f"{project.source}: shapes use label(s) {unknown} that the project does not define"
        )
