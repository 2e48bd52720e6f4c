"""SOLLOL's version, in a module of its own: the package's __init__ imports the service, so a part that
imported the version from the package would import itself in a circle."""

__version__ = "1.0.0"
