"""vmnet.testing: a pytest plugin for VM networking tests.

Load it with `pytest -p vmnet.testing` (or let the installed `pytest11` entry
point load it). The fixtures are in `vmnet.testing.plugin`; docs/testing.md
is their reference.
"""

pytest_plugins = ["vmnet.testing.plugin"]
