"""Errors that adbench reports to users as one clear line (the CLI prints them without a traceback)."""


class AdbenchError(Exception):
    """Base class: a problem the user can fix; the message names the file or option and the fix."""


class DataError(AdbenchError):
    """Missing, malformed or inconsistent data (root, category, image, mask, split)."""


class WeightsError(AdbenchError):
    """Pretrained weights that cannot be found or do not fit the model."""


class ConfigError(AdbenchError):
    """An option or combination of options that cannot work."""
