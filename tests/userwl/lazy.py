"""User workloads that import inside their bodies: 1.0 when the package was already loaded in
the worker (the fork server preloaded it), 0.0 when this trial imported it."""

import importlib
import sys


def dynamic(config, report):
    """Imports by a name built at run time: only a trial can tell what it loads."""
    loaded = "tabulate" in sys.modules
    importlib.import_module("tab" + "ulate")
    return {"value": 1.0 if loaded else 0.0}


def static(config, report):
    """An import statement in the body: read from the function's code before any trial."""
    loaded = "pygments" in sys.modules
    import pygments  # noqa: F401 - what the objective imports lazily

    return {"value": 1.0 if loaded else 0.0}
