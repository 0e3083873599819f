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

"""ament_python build of vla_safety_filter (also installs with plain pip)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'vla_safety_filter'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['data/*.npz', 'data/*.json', 'data/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
    ],
    python_requires='>=3.10',
    install_requires=['setuptools', 'numpy', 'scipy', 'pyyaml', 'rich', 'mcap', 'rosbags',
                      'matplotlib'],
    extras_require={
        'test': ['pytest', 'hypothesis', 'pyarrow', 'safetensors'],
        'datasets': ['pyarrow'],
        'checkpoints': ['safetensors'],
        # `vla-safety drill` worlds: PushT (pymunk; pulls gymnasium, pygame, shapely, opencv)
        'drills': ['gym-pusht>=0.1.8,<0.2'],
        # openpi websocket (msgpack-numpy) and OpenVLA REST (json-numpy) policy clients. Also
        # install openpi-client without its dependencies (`make setup` does): it pins numpy < 2,
        # which conflicts with opencv (gym-pusht); its msgpack_numpy runs unchanged on numpy 2.
        'remote': ['websockets>=15', 'msgpack', 'json-numpy'],
        # `vla-safety drill --world aloha`: gym-aloha's MuJoCo bimanual ViperX (mujoco, dm-control)
        'aloha': ['gym-aloha==0.1.5'],
        # the safety_filter's optional Cartesian workspace box: forward kinematics by pinocchio
        'workspace': ['pin>=4.1,<5'],
    },
    zip_safe=True,
    maintainer='vla_safety_filter maintainers',
    maintainer_email='maintainers@vla-safety-filter.dev',
    description='Runtime safety filter for VLA policies on ros2_control arms.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'vla-safety = vla_safety_filter.cli:main',
            'policy_bridge = vla_safety_filter.nodes.policy_bridge:main',
            'safety_filter = vla_safety_filter.nodes.safety_filter:main',
            'action_monitor = vla_safety_filter.nodes.action_monitor:main',
            'execspec_check = vla_safety_filter.nodes.execspec_check:main',
            'lifecycle_manager = vla_safety_filter.nodes.lifecycle_manager:main',
            'sim_arm = vla_safety_filter.nodes.sim_arm:main',
            'sim_world = vla_safety_filter.nodes.sim_world:main',
            'flight_recorder = vla_safety_filter.nodes.flight_recorder:main',
        ],
    },
)
