"""Calling Nuclio functions by name over HTTP, the way a busy GPU function needs to be called.

- Address: ``BRIDGE_FUNCTIONS`` (``name=url`` pairs), else ``BRIDGE_FUNCTION_URL`` with ``{name}``
  (Nuclio's ``http://nuclio-nuclio-<name>:8080`` container convention by default) for a name that
  matches :data:`FUNCTION_NAME` (a Nuclio function name: lower-case letters, digits and inner dashes,
  with at least one letter, so never an address such as ``2130706433`` or ``0``) and lands in the URL's
  host exactly as the template's host says; a template whose host is the name alone (``http://{name}``,
  where ``localhost`` would do) is refused. Any other name is refused
  (:func:`function_name_error`) before a URL is built: a webhook's ``model_name`` never picks a host.
- At most ``BRIDGE_FUNCTION_IN_FLIGHT`` calls in flight per function (a semaphore): a GPU function
  with one worker rejects a request that waits more than 10 s for it.
- Per-call time limit; retries with exponential back-off on 408, 429, 5xx and on connection errors
  or timeouts; any other 4xx, or an answer that is not JSON, is an error at once (the same request
  would fail the same way).
- Frames are sent as JPEG, re-encoded at lower quality and then downscaled until the JSON body (base64
  included) fits ``BRIDGE_FUNCTION_BODY_LIMIT`` (by default the ``maxRequestBodySize`` the project's
  functions declare, :data:`quadratseg.settings.FUNCTION_BODY_LIMIT`); :func:`encode_frame` returns
  the scale so answers are mapped back to the frame's pixels.

Examples:
    >>> function_urls("a=http://127.0.0.1:9001, b=http://h:8080/")["b"]
    'http://h:8080/'
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from quadratseg.errors import QuadratsegError
from quadratseg.settings import FUNCTION_BODY_LIMIT

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# a DNS label, as Nuclio names are, with a letter (a name of digits alone is an IPv4 address to a resolver)
FUNCTION_NAME = re.compile(r"(?=[a-z0-9-]*[a-z])[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
JPEG_QUALITIES = (95, 85, 75)
DOWNSCALE_STEP = 0.75


class FunctionError(QuadratsegError):
    """A function call that failed for good (after retries, or at once for a non-retryable answer)."""


class FunctionUnavailableError(FunctionError):
    """A function that stayed away through every retry: not reachable, not answering in time, or
    answering 408, 429, 502, 503 or 504 (busy, restarting, behind a proxy that cannot reach it). A
    500 is the handler failing on that request (Nuclio's answer to an exception): a plain
    :class:`FunctionError`."""


AWAY_STATUSES = frozenset({408, 429, 502, 503, 504})  # the function is away, not failing on the request


def function_urls(pairs: str) -> dict[str, str]:
    """``name=url`` pairs separated by commas -> {name: url}."""
    out = {}
    for item in filter(None, (p.strip() for p in pairs.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise QuadratsegError(
                f"BRIDGE_FUNCTIONS entry {item!r} is not name=url (e.g. pth-lama=http://127.0.0.1:9003)"
            )
        out[name.strip()] = url.strip()
    return out


def function_name_error(name: str, urls: dict[str, str], url_template: str) -> str:
    """Why function ``name`` may not be called ("" when it may): it is listed in ``urls``
    (``BRIDGE_FUNCTIONS``), or it matches :data:`FUNCTION_NAME` and ``url_template`` puts it into the
    URL's host and nowhere else.

    Examples:
        >>> function_name_error("pth-lama", {}, "http://nuclio-nuclio-{name}:8080")
        ''
        >>> function_name_error("x@evil.example/", {}, "http://nuclio-nuclio-{name}:8080")[:43]
        "model_name 'x@evil.example/' is not allowed"
    """
    if name in urls:
        return ""
    if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
        return (
            f"model_name {name!r} is not allowed: list it in BRIDGE_FUNCTIONS (name=url), or use a Nuclio "
            "function name (lower-case letters, digits and inner dashes, at least one letter) reached "
            "through BRIDGE_FUNCTION_URL"
        )
    template_host = urlsplit(url_template).hostname or ""
    if template_host == "{name}":
        return (
            f"model_name {name!r} is not listed in BRIDGE_FUNCTIONS and BRIDGE_FUNCTION_URL "
            f"({url_template!r}) makes the name the whole host (localhost would reach the bridge's own "
            "machine); give the host a fixed part (http://nuclio-nuclio-{name}:8080) or list the function "
            "in BRIDGE_FUNCTIONS"
        )
    url = url_template.format(name=name)
    if "{name}" not in template_host or urlsplit(url).hostname != template_host.replace("{name}", name):
        return (
            f"model_name {name!r} is not listed in BRIDGE_FUNCTIONS and BRIDGE_FUNCTION_URL "
            f"({url_template!r}) does not put the name into the host; list the function in BRIDGE_FUNCTIONS"
        )
    return ""


def encode_frame(image_bytes: bytes, limit_bytes: int, overhead_bytes: int = 1024) -> tuple[str, float]:
    """(base64 JPEG, scale) of a frame whose base64 fits ``limit_bytes - overhead_bytes``.

    The original bytes are sent as they are when they fit (no re-encoding loss); else JPEG at
    quality 95, 85, 75, then downscaled by 0.75 steps at quality 85. ``scale`` = sent width /
    frame width (1.0 when not downscaled).
    """
    budget = limit_bytes - overhead_bytes
    if 4 * -(-len(image_bytes) // 3) <= budget:
        return base64.b64encode(image_bytes).decode("ascii"), 1.0
    from PIL import Image

    from quadratseg.images import decode_image_rgb

    image = Image.fromarray(decode_image_rgb(image_bytes, "the frame"))
    scale = 1.0
    for attempt in range(40):
        quality = JPEG_QUALITIES[attempt] if attempt < len(JPEG_QUALITIES) else 85
        if attempt >= len(JPEG_QUALITIES):
            scale *= DOWNSCALE_STEP
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        buffer = io.BytesIO()
        (image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)).save(
            buffer, "JPEG", quality=quality
        )
        data = buffer.getvalue()
        if 4 * -(-len(data) // 3) <= budget:
            if scale < 1.0 or quality < JPEG_QUALITIES[0]:
                logger.info(
                    "frame re-encoded to fit the %d-byte body limit: JPEG q%d at scale %.3f",
                    limit_bytes,
                    quality,
                    scale,
                )
            return base64.b64encode(data).decode("ascii"), size[0] / image.width
    raise FunctionError(f"a frame cannot be made to fit a {limit_bytes}-byte request body")


@dataclass
class FunctionClient:
    """Calls functions by name (module docstring); one instance per worker process."""

    urls: dict[str, str] = field(default_factory=dict)
    url_template: str = "http://nuclio-nuclio-{name}:8080"
    timeout_s: float = 900.0
    retries: int = 4
    body_limit: int = FUNCTION_BODY_LIMIT
    in_flight: int = 1
    backoff_s: float = 1.0
    _gates: dict[str, threading.BoundedSemaphore] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _client: Any = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> FunctionClient:
        """A client configured from the project's settings (``BRIDGE_FUNCTION*``)."""
        return cls(
            urls=function_urls(settings.bridge_functions),
            url_template=settings.bridge_function_url,
            timeout_s=settings.bridge_function_timeout_s,
            retries=settings.bridge_function_retries,
            body_limit=settings.bridge_function_body_limit,
            in_flight=max(1, settings.bridge_function_in_flight),
        )

    def url(self, name: str) -> str:
        """The address of function ``name``; FunctionError for a name that is not allowed
        (:func:`function_name_error`)."""
        why = function_name_error(name, self.urls, self.url_template)
        if why:
            raise FunctionError(why)
        return self.urls.get(name) or self.url_template.format(name=name)

    def _gate(self, name: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._gates.setdefault(name, threading.BoundedSemaphore(self.in_flight))

    def _http(self) -> Any:
        """One HTTP client for the process's calls (kept-alive connections; a new client per call costs
        about 40 ms of CPU, its TLS context, per frame)."""
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(limits=httpx.Limits(max_connections=max(8, 2 * self.in_flight)))
            return self._client

    def call(self, name: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON to function ``name``; its decoded JSON answer (module docstring)."""
        import httpx

        payload = json.dumps(body).encode()
        if len(payload) > self.body_limit:
            raise FunctionError(
                f"request to {name} is {len(payload)} bytes, over the {self.body_limit}-byte body limit "
                "(BRIDGE_FUNCTION_BODY_LIMIT)"
            )
        url, last = self.url(name), ""  # a name that is not allowed fails here, before any network
        away = True  # the last failure said the function is away (vs. a 500 from its handler)
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                logger.warning("%s: %s; retry %d/%d in %.1f s", name, last, attempt, self.retries, delay)
                time.sleep(delay)
            try:
                with self._gate(name):
                    response = self._http().post(
                        url,
                        content=payload,
                        headers={"Content-Type": "application/json"},
                        timeout=self.timeout_s,
                    )
            except httpx.TimeoutException:
                last, away = f"no answer within {self.timeout_s} s", True
                continue
            except httpx.TransportError as exc:
                last, away = f"cannot reach {url} ({exc.__class__.__name__}: {exc})", True
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code} {response.text[:200]!r}"
                away = response.status_code in AWAY_STATUSES
                continue
            if response.status_code >= 400:
                raise FunctionError(f"{name} answered HTTP {response.status_code}: {response.text[:500]}")
            try:
                return response.json()
            except ValueError:
                raise FunctionError(
                    f"{name} answered something that is not JSON: {response.text[:200]!r}"
                ) from None
        error = FunctionUnavailableError if away else FunctionError
        raise error(f"{name} failed after {self.retries + 1} attempts: {last}")
