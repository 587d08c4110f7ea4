"""Building blocks shared by several detectors."""
