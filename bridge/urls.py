"""``python -m bridge.urls ENDPOINT --project_id P [--model_name N] [--target_proj_id T] ...``: the target
URL of a CVAT webhook, signed for its query parameters.

CVAT signs a delivery's body, not the URL it posts to; the bridge therefore checks its own signature
of the URL's path and query (``qsig``, :func:`bridge.app.query_signature`, keyed by
``CVAT_WEBHOOK_SECRET``). A delivery whose query was changed (another ``target_proj_id``, another
``model_name``) gets 401. The URL names the project whose webhook it is (``project_id``): one key signs
every URL and CVAT shows target URLs to anyone who can list webhooks, so a delivery about a job or task
of another project gets 401 too. Make every webhook's URL with this command.

The bridge's default address, ``http://bridge.cvat.internal:8000``, is its network alias in the compose
file (docs/bridge.md): CVAT validates a webhook's target URL with Django's URLValidator, which refuses a
host of one label such as ``bridge``.
"""

from __future__ import annotations

DEFAULT_BRIDGE = "http://bridge.cvat.internal:8000"
ENDPOINTS = (
    "detect-model-webhook",
    "crop-quadrat-and-create-new-task-webhook",
    "remove-grid-and-create-new-task-webhook",
)


def url(
    endpoint: str,
    project_id: int | None = None,
    model_name: str | None = None,
    target_proj_id: int | None = None,
    conv_mask_to_poly: bool | None = None,
    threshold: float | None = None,
    bridge: str = DEFAULT_BRIDGE,
) -> str:
    """Print the signed target URL of one webhook (CVAT_WEBHOOK_SECRET from .env).

    Args:
        endpoint: detect-model-webhook, crop-quadrat-and-create-new-task-webhook or
            remove-grid-and-create-new-task-webhook.
        project_id: the CVAT project whose webhook this is (deliveries about other projects get 401).
        model_name: the function of detect-model-webhook (e.g. pth-yolo-gridcorners).
        target_proj_id: the project of the derived task (the two other endpoints).
        conv_mask_to_poly: store masks as polygons (detect-model-webhook).
        threshold: the function's threshold (detect-model-webhook).
        bridge: the bridge's address as CVAT reaches it (a dotted name, an IP or localhost: CVAT
            refuses a single-label host).

    Examples:
        python -m bridge.urls detect-model-webhook --project_id 1 --model_name pth-yolo-gridcorners
    """
    from bridge.app import signed_path
    from quadratseg.cli import current_settings
    from quadratseg.errors import QuadratsegError

    endpoint = endpoint.strip("/")
    if endpoint not in ENDPOINTS:
        raise QuadratsegError(f"endpoint {endpoint!r} is not one of {', '.join(ENDPOINTS)}")
    if project_id is None:
        raise QuadratsegError(f"{endpoint} needs --project_id (the project whose webhook this is)")
    detect = endpoint == ENDPOINTS[0]
    if detect and not model_name:
        raise QuadratsegError("detect-model-webhook needs --model_name")
    if not detect and target_proj_id is None:
        raise QuadratsegError(f"{endpoint} needs --target_proj_id")
    secret = current_settings().cvat_webhook_secret
    if not secret:
        raise QuadratsegError("CVAT_WEBHOOK_SECRET is not set: the URL is signed with it (set it in .env)")
    params = (
        {"model_name": model_name, "conv_mask_to_poly": conv_mask_to_poly, "threshold": threshold}
        if detect
        else {"target_proj_id": int(target_proj_id)}
    )
    params["project_id"] = int(project_id)
    return bridge.rstrip("/") + signed_path(secret, f"/{endpoint}", **params)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(url, name="python -m bridge.urls")
