"""``python -m bridge.urls ENDPOINT [--model_name N] [--target_proj_id P] ...``: the target URL of a
CVAT webhook, signed for its query parameters.

CVAT signs a delivery's body, not the URL it posts to; the bridge therefore checks its own signature
of the URL's path and query (``qsig``, :func:`bridge.app.query_signature`, keyed by
``CVAT_WEBHOOK_SECRET``). A delivery whose query was changed (another ``target_proj_id``, another
``model_name``) gets 401. Make every webhook's URL with this command.
"""

from __future__ import annotations

ENDPOINTS = (
    "detect-model-webhook",
    "crop-quadrat-and-create-new-task-webhook",
    "remove-grid-and-create-new-task-webhook",
)


def url(
    endpoint: str,
    model_name: str | None = None,
    target_proj_id: int | None = None,
    conv_mask_to_poly: bool | None = None,
    threshold: float | None = None,
    bridge: str = "http://bridge:8000",
) -> str:
    """Print the signed target URL of one webhook (CVAT_WEBHOOK_SECRET from .env).

    Args:
        endpoint: detect-model-webhook, crop-quadrat-and-create-new-task-webhook or
            remove-grid-and-create-new-task-webhook.
        model_name: the function of detect-model-webhook (e.g. pth-yolo-gridcorners).
        target_proj_id: the project of the derived task (the two other endpoints).
        conv_mask_to_poly: store masks as polygons (detect-model-webhook).
        threshold: the function's threshold (detect-model-webhook).
        bridge: the bridge's address as CVAT reaches it.

    Examples:
        python -m bridge.urls detect-model-webhook --model_name pth-yolo-gridcorners
    """
    from bridge.app import signed_path
    from quadratseg.cli import current_settings
    from quadratseg.errors import QuadratsegError

    endpoint = endpoint.strip("/")
    if endpoint not in ENDPOINTS:
        raise QuadratsegError(f"endpoint {endpoint!r} is not one of {', '.join(ENDPOINTS)}")
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
    return bridge.rstrip("/") + signed_path(secret, f"/{endpoint}", **params)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(url, name="python -m bridge.urls")
