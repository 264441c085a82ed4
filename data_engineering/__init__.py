"""data_engineering: CVAT projects (live server, XML exports, project backups) -> FiftyOne datasets, and back.

Stages run as ``python -m data_engineering.<stage>``; see data_engineering/README.md.
"""
