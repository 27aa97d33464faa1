"""Tests of the vmnet.testing plugin itself.

pytester runs inner sessions; the plugin is loaded here unless the installed
`vmnet` pytest11 entry point already loaded it (registering the same module
twice under two names is an error in pluggy).
"""

from __future__ import annotations

import importlib.metadata
import os


def _autoloaded() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "vmnet.testing.plugin"
               for ep in importlib.metadata.entry_points(group="pytest11"))


pytest_plugins = ["pytester"] + ([] if _autoloaded() else ["vmnet.testing.plugin"])
