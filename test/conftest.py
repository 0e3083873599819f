# Copyright 2026 vla_safety_filter maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Shared fixtures and probes of the test suite: ROS harness, real data, lint scope, policy servers.

Test modules share fixtures and probes through this file only; they do not import each other.
Factories are fixtures that return a callable (e.g. `filter_probe(controller='arm')`).

Missing real data (/work/shared/data, or $VLA_SAFETY_DATA): a test that needs it asks for the
`shared_data` fixture (or `data_file`), which skips with the path it looked for, so a checkout
without the recordings still runs everything else. CI sets VLA_REQUIRE_DATA=1 (.ci/run), which
turns that skip into a failure: there, a missing recording is a broken setup, not a reason to
test less.
"""
import os
from pathlib import Path
from types import SimpleNamespace

from data_paths import DATA as DATA_DIR
import policy_servers
from probes import call_service, FakeArm, FilterProbe, SMALL_CONTRACT
import pytest
import ros_reach

REPO = Path(__file__).resolve().parent.parent
#: What the ament linters check (test_flake8, test_pep257, test_copyright).
LINT_SCOPE = ('vla_safety_filter', 'test', 'bench', 'launch', 'setup.py')


def missing_data(what: str) -> None:
    """Skip the test for missing real data, or fail when VLA_REQUIRE_DATA=1 (CI)."""
    reason = f'real data {what} not found (it sits beside the repository, or $VLA_SAFETY_DATA)'
    if os.environ.get('VLA_REQUIRE_DATA') == '1':
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope='session')
def shared_data():
    """Return the real recorded data folder (see the policy above)."""
    if not os.path.isdir(DATA_DIR):
        missing_data(DATA_DIR)
    return DATA_DIR


@pytest.fixture(scope='session')
def data_file(shared_data):
    """Return a function giving the path of one recording in the data folder (policy above)."""
    def path(name: str) -> str:
        found = os.path.join(shared_data, name)
        if not os.path.exists(found):
            missing_data(found)
        return found
    return path


@pytest.fixture
def ros():
    """Return a Harness: an isolated rclpy context on its own domain, closed after the test."""
    from ros_harness import Harness
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """Return the repository's root folder."""
    return REPO


@pytest.fixture(scope='session')
def lint_paths() -> list:
    """Return the files and folders the ament linters check."""
    return [REPO / name for name in LINT_SCOPE]


@pytest.fixture(scope='session')
def python_files(lint_paths) -> list:
    """Return every Python file in the lint scope."""
    files = []
    for path in lint_paths:
        files.extend(sorted(path.rglob('*.py')) if path.is_dir() else [path])
    return [path for path in files if '__pycache__' not in path.parts]


# ---- the pipeline's parameters from a real recording ---------------------------------------
def pipeline_setup(tmp_path, episodes_file, calibrate_on_rest=False):
    """
    Calibrate on a real recording; return parameters of every node replaying its first episode.

    Returns (contract, {node name: parameters}). The contract and calibration come from all
    episodes, or with `calibrate_on_rest` from all but the replayed one; the checkpoint metadata
    is identical to the bridge's unnormalizer parameters.
    """
    from vla_safety_filter.core.calibration import calibrate
    from vla_safety_filter.core.checkpoints import write_params_yaml
    from vla_safety_filter.core.episodes import read_episodes
    from vla_safety_filter.core.execspec import Metadata, metadata_to_params
    from vla_safety_filter.core.params import contract_to_params

    data = read_episodes(episodes_file)
    first = data.episodes[0]
    calibration_episodes = data.episodes[1:] if calibrate_on_rest else data.episodes
    result = calibrate([e.actions for e in calibration_episodes], data.joint_names,
                       1.0 / data.fps, holdout=0.0)
    cal = str(tmp_path / 'cal.npz')
    result.data.save(cal)
    meta = Metadata('mean_std', [True] * data.dim, mean=result.data.mu, std=result.data.sigma,
                    source='test')
    checkpoint = tmp_path / 'checkpoint.yaml'
    write_params_yaml(str(checkpoint), meta)
    return result.contract, {
        'safety_filter': {**contract_to_params(result.contract, cal), 'command_timeout': 0.5},
        'sim_arm': {'joint_names': list(data.joint_names),
                    'initial_positions': [float(v) for v in first.actions[0]]},
        'policy_bridge': {'episodes_file': episodes_file, 'episode': int(first.index),
                          'loop': True, **metadata_to_params(meta)},
        'action_monitor': {'calibration_file': cal},
        'execspec_check': {'checkpoint': str(checkpoint), 'format': 'yaml',
                           'policy_outputs_normalized': False},   # recorded actions, not outputs
    }


@pytest.fixture
def pipeline_params(tmp_path):
    """Return `(episodes_file, calibrate_on_rest=False) -> (contract, params)` (pipeline_setup)."""
    def make(episodes_file, calibrate_on_rest=False):
        return pipeline_setup(tmp_path, episodes_file, calibrate_on_rest)
    return make


# ---- probes of the safety filter (test/probes.py) ------------------------------------------
@pytest.fixture
def small_contract() -> dict:
    """Return the filter parameters of SMALL_CONTRACT (a fresh copy)."""
    return {k: list(v) if isinstance(v, list) else v for k, v in SMALL_CONTRACT.items()}


@pytest.fixture
def filter_probe(ros):
    """Return `(controller='arm') -> FilterProbe` on the test's harness."""
    return lambda controller='arm': FilterProbe(ros, controller)


@pytest.fixture
def fake_arm(ros):
    """Return `(start, controller='arm', names=...) -> FakeArm` on the test's harness."""
    return lambda start, **kwargs: FakeArm(ros, start, **kwargs)


@pytest.fixture
def service_call():
    """Return call_service: `(node, srv_type, name, request, timeout=10.0) -> response`."""
    return call_service


# ---- policy servers (test/policy_servers.py) ----------------------------------------------
@pytest.fixture
def openpi():
    """Return a real openpi-protocol policy server on 127.0.0.1, stopped after the test."""
    server = policy_servers.OpenpiServer()
    yield server
    server.stop()


@pytest.fixture
def make_openpi():
    """Return `(port=0, metadata=True) -> OpenpiServer`; each is stopped after the test."""
    servers = []

    def make(**kwargs):
        servers.append(policy_servers.OpenpiServer(**kwargs))
        return servers[-1]
    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def wire():
    """Return the policy servers' wire helpers: pack/unpack (openpi), encode/decode (REST)."""
    return SimpleNamespace(pack=policy_servers.pack, unpack=policy_servers.unpack,
                           encode=policy_servers.encode, decode=policy_servers.decode)


@pytest.fixture
def rest():
    """Return a real OpenVLA-style REST policy server on 127.0.0.1, stopped after the test."""
    server = policy_servers.RestServer()
    yield server
    server.stop()


@pytest.fixture
def chunk():
    """Return policy_servers.chunk: `(h=4, d=2, start=0.0)`, the servers' default reply."""
    return policy_servers.chunk


# ---- drill worlds, demonstrations and contracts (test/drill_support.py) -------------------
def _drill_world(name: str, package: str):
    """Yield a drill world (skip when its package is not installed), closed at the end."""
    pytest.importorskip(package, reason=f'{package} is not installed (drills extras)')
    from vla_safety_filter.core.drill.worlds import make_world
    world = make_world(name)
    yield world
    world.close()


@pytest.fixture(scope='session')
def pusht_demos(data_file):
    """Return the path of the PushT demonstrations (the data policy above)."""
    from drill_support import PUSHT_DEMOS
    return data_file(PUSHT_DEMOS)


@pytest.fixture(scope='session')
def pusht_world():
    """Yield one gym-pusht drill world for the session (episodes reset it by seed)."""
    yield from _drill_world('pusht', 'gym_pusht')


@pytest.fixture(scope='session')
def pusht_safety(pusht_demos, pusht_world):
    """Return the contract and monitor calibration of the PushT demonstrations."""
    from vla_safety_filter.core.drill.runner import safety_from_demos
    return safety_from_demos(pusht_demos, pusht_world)


@pytest.fixture(scope='session')
def aloha_demos(data_file):
    """Return the path of the recorded ALOHA sim episodes (the data policy above)."""
    from drill_support import ALOHA_DEMOS
    return data_file(ALOHA_DEMOS)


@pytest.fixture(scope='session')
def aloha_world():
    """Yield one gym-aloha transfer-cube drill world for the session."""
    yield from _drill_world('aloha', 'gym_aloha')


@pytest.fixture(scope='session')
def aloha_safety(aloha_demos, aloha_world):
    """Return the contract and monitor calibration of the recorded ALOHA episodes."""
    from vla_safety_filter.core.drill.runner import safety_from_demos
    return safety_from_demos(aloha_demos, aloha_world)


@pytest.fixture
def pusht_drill(pusht_world, pusht_demos, pusht_safety):
    """Return `(conditions, **kwargs) -> (episodes, settings)`: short_drill on the PushT world."""
    from drill_support import short_drill

    def drill(conditions: str, **kwargs):
        return short_drill(pusht_world, pusht_demos, pusht_safety, conditions, **kwargs)
    return drill


# ---- the second distribution runs only what can reach ROS (test/ros_reach.py) --------------
def pytest_configure(config):
    """Register the `ros` marker."""
    config.addinivalue_line('markers', 'ros: can reach ROS 2 code (set by conftest from imports)')


def pytest_collection_modifyitems(config, items):
    """Mark `ros` every test whose module or fixtures can reach ROS 2 (see test/ros_reach.py)."""
    fixtures = ros_reach.ros_fixtures(Path(__file__))
    for item in items:
        if ros_reach.reaches_ros(Path(item.fspath)) or fixtures & set(item.fixturenames):
            item.add_marker(pytest.mark.ros)
