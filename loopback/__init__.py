"""Test and demo equipment for the bridge, everything on 127.0.0.1 (loopback): not the bridge.

- :mod:`loopback.cvat_standin`: a CVAT stand-in the real cvat-sdk client talks to (REST checked
  against CVAT's OpenAPI schema, webhook deliveries signed and timed like CVAT's, fault injection);
- :mod:`loopback.function_server`: one unpacked Nuclio zip served over HTTP as Nuclio's HTTP trigger
  serves it (body limit, workers);
- :mod:`loopback.harness`: ``python -m bridge`` and function servers as processes, and an annotator's
  three-stage day driven through the stand-in;
- :mod:`loopback.demo`: the demo's bridge stage.

A distribution of its own (``loopback/pyproject.toml``, ``quadratseg-loopback``), installed by the
development set-ups (``make install`` with the ``dev`` extra, pixi's ``all`` environment) and never
part of the project's wheel: the runtime ``bridge`` package names nothing from here
(``tests/test_architecture.py``).
"""
