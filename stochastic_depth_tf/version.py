"""The package version, read by setup.py and re-exported as `__version__`."""

__version__ = "0.4.0b1"
