"""Errors raised before (or instead of) a long job, each telling the user how to fix it."""


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any training starts."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing; the message names the expected path and layout."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/Inf; the message names the epoch and step."""


class DatasetFormatError(DatasetNotFoundError):
    """Dataset files exist but do not follow their format (e.g. a verification .bin with an odd image count)."""


class DiskFullError(OSError):
    """A run file could not be written because its file system is full (or over quota); names the file and device."""
