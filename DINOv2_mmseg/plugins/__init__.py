"""What MMSeg configs bring in with ``custom_imports = dict(imports=["DINOv2_mmseg.plugins"])``.

Importing it registers the ``DINOv2`` backbone in ``mmseg.registry.MODELS`` and the
``CoralSegDataset`` in ``mmseg.registry.DATASETS``.
"""

from DINOv2_mmseg.compat import install_mmcv_ops_stand_in

install_mmcv_ops_stand_in()

from DINOv2_mmseg.plugins.backbone import DINOv2  # noqa: E402
from DINOv2_mmseg.plugins.dataset import CoralSegDataset  # noqa: E402

__all__ = ["CoralSegDataset", "DINOv2"]
