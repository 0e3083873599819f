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
