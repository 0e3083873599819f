"""Shared fixtures: the real recorded data folder and an isolated ROS 2 context per test."""
import os

import pytest

from data_paths import DATA as DATA_DIR


@pytest.fixture
def shared_data():
    if not os.path.isdir(DATA_DIR):
        pytest.skip(f'real data folder {DATA_DIR} not found (it sits beside the repository)')
    return DATA_DIR


@pytest.fixture
def ros():
    from ros_harness import Harness
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture
def openpi():
    """A real openpi-protocol policy server on 127.0.0.1 (test_drill_remote.OpenpiServer)."""
    from test_drill_remote import OpenpiServer
    server = OpenpiServer()
    yield server
    server.stop()


@pytest.fixture
def rest():
    """A real OpenVLA-style REST policy server on 127.0.0.1 (test_drill_remote.RestServer)."""
    from test_drill_remote import RestServer
    server = RestServer()
    yield server
    server.stop()
