import os
import threading

import pytest

from vmnet.core import netns
from vmnet.core.errors import ConfigError


def test_own_namespace_runs_in_place_without_a_thread():
    seen = []
    netns.run_in("/proc/self/ns/net", lambda: seen.append(threading.get_ident()))
    assert seen == [threading.get_ident()]
    assert netns.is_own("/proc/self/ns/net")
    assert not netns.is_own("/nonexistent/ns")


def test_bad_namespaces_are_config_errors():
    with pytest.raises(ConfigError, match="--netns"):
        netns.check_netns("vmt-no-such-namespace")
    with pytest.raises(ConfigError, match="not a network namespace"):
        netns.check_netns(os.path.abspath(__file__))
    with pytest.raises(ConfigError):
        netns.netns_path("..")
