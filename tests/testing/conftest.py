"""Tests of the vmnet.testing plugin itself; pytester runs inner sessions."""

pytest_plugins = ["pytester"]
