"""The bridge: a webhook service that CVAT calls to pre-annotate jobs and chain the stages."""
