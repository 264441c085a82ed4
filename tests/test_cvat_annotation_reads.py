"""The bridge reads a job's or a task's annotations as CVAT's JSON, without cvat-sdk's models
(:meth:`quadratseg.cvat_client.Cvat.job_shapes`): checked against cvat-sdk's own parsing of the same
answers, CVAT's real REST dumps (``../shared/data/cvat/rest_dumps/annotations.json``: rectangles,
polygons, polylines, points, ellipses, cuboids, masks and skeletons with elements and attributes),
served on 127.0.0.1 as CVAT serves them."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from quadratseg.cvat_client import Cvat, created_of, human_frames_of, shape_fingerprint, shape_keys

pytestmark = pytest.mark.shared_data


@pytest.fixture
def dump_server(shared_data):
    """GET /api/{jobs,tasks}/ID/annotations answered with the dump's document for that id."""
    dumps = json.loads((shared_data / "cvat" / "rest_dumps" / "annotations.json").read_text())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            match = re.fullmatch(r"/api/(jobs|tasks)/(\d+)/annotations/?(\?.*)?", self.path)
            document = dumps[match.group(1)[:-1]].get(match.group(2)) if match else None
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/vnd.cvat+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", dumps
    server.shutdown()


def test_annotations_read_as_json_are_what_cvat_sdk_parses(dump_server):
    """Every shape of every dumped job and task: the dict the bridge reads equals cvat-sdk's parsed and
    serialized shape, and so do its fingerprint, the frames it calls a person's and the shapes a create
    made; an unknown job is CVAT's 404, not an empty job."""
    from cvat_sdk import Client, Config
    from cvat_sdk.api_client.exceptions import NotFoundException

    url, dumps = dump_server
    with Client(url, config=Config(status_check_period=0.1), check_server_version=False) as client:
        cvat = Cvat(client, retries=0)
        api = client.api_client
        read = 0
        types = set()
        for kind, reader, sdk_api in (
            ("job", cvat.job_shapes, api.jobs_api),
            ("task", cvat.task_shapes, api.tasks_api),
        ):
            for object_id, document in dumps[kind].items():
                ours = reader(int(object_id))
                theirs = [
                    api.sanitize_for_serialization(s)
                    for s in sdk_api.retrieve_annotations(int(object_id))[0].shapes
                ]
                assert ours == theirs == document["shapes"], (kind, object_id)
                assert [shape_fingerprint(s) for s in ours] == [shape_fingerprint(s) for s in theirs]
                record = {
                    str(s["id"]): [s["frame"], shape_fingerprint(s)] for s in theirs if s["source"] == "auto"
                }
                assert human_frames_of(ours, record) == human_frames_of(theirs, record)
                before = {s["id"] for s in ours[: len(ours) // 2]}
                keys = shape_keys([s for s in ours if s["id"] not in before and s["source"] == "auto"])
                assert created_of(ours, before, keys) == created_of(theirs, before, keys)
                read += len(ours)
                types |= {s["type"] for s in ours}
        assert read > 300 and {"skeleton", "mask", "cuboid", "ellipse", "polygon"} <= types
        with pytest.raises(NotFoundException):
            cvat.job_shapes(999_999)
