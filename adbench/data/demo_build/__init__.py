"""Embedded demo data: an MVTec-AD-layout anomaly-detection set built offline from packaged photographs.

``build_demo(root, seed)`` writes, deterministically from the seed, 3 texture categories (brick, grass,
gravel) and 4 object categories (coin, cup, cat, flower), each with normal training images and normal and
defective test images with pixel masks, and caches the result under ``root``.
"""

from adbench.data.demo_build.build import (
    DEMO_CATEGORIES,
    DEMO_DEFECTS,
    MARKER,
    VERSION,
    build_demo,
    read_marker,
)

__all__ = ["DEMO_CATEGORIES", "DEMO_DEFECTS", "MARKER", "VERSION", "build_demo", "read_marker"]
