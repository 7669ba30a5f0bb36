"""The library version, in its own module so that saving a checkpoint does not import the package's loader."""

__version__ = "0.1.0"
