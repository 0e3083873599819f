"""`vla-safety bringup`'s node set over real DDS: all five nodes from parameter files, sim arm moving."""
import os
import threading

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Float64MultiArray

from ros_harness import wait_for
from vla_safety_filter.core.calibration import calibrate
from vla_safety_filter.core.checkpoints import write_params_yaml
from vla_safety_filter.core.episodes import read_episodes
from vla_safety_filter.core.execspec import Metadata, metadata_to_params
from vla_safety_filter.core.params import write_filter_params
from vla_safety_filter.nodes.bringup import pipeline_nodes


def _param_files(tmp_path, shared_data):
    data = read_episodes(os.path.join(shared_data, 'so101_record_test_4ep.npz'))
    result = calibrate([e.actions for e in data.episodes], data.joint_names, 1.0 / data.fps,
                       holdout=0.0)
    filt = tmp_path / 'filter.yaml'
    write_filter_params(str(filt), result.contract, 'cal.npz', {'command_timeout': 0.5})
    result.data.save(str(tmp_path / 'cal.npz'))
    meta = Metadata('mean_std', [True] * data.dim, mean=result.data.mu, std=result.data.sigma,
                    source='test')
    checkpoint = tmp_path / 'checkpoint.yaml'
    write_params_yaml(str(checkpoint), meta)
    first = data.episodes[0]
    nodes = {
        'sim_arm': {'joint_names': list(data.joint_names),
                    'initial_positions': [float(v) for v in first.actions[0]]},
        'policy_bridge': {'episodes_file': os.path.join(shared_data, 'so101_record_test_4ep.npz'),
                          'episode': int(first.index), 'loop': True,
                          **{k: v for k, v in metadata_to_params(meta).items()}},
        'action_monitor': {'calibration_file': str(tmp_path / 'cal.npz')},
        'execspec_check': {'checkpoint': str(checkpoint), 'format': 'yaml'},
    }
    pipeline = tmp_path / 'pipeline.yaml'
    pipeline.write_text(yaml.safe_dump({n: {'ros__parameters': p} for n, p in nodes.items()}))
    return [str(filt), str(pipeline)]


def test_bringup_nodes_activate_and_drive_the_sim_arm(tmp_path, shared_data):
    files = _param_files(tmp_path, shared_data)
    args = ['bringup', '--ros-args'] + [x for f in files for x in ('--params-file', f)]
    context = Context()
    rclpy.init(context=context, args=args, domain_id=211)
    executor = SingleThreadedExecutor(context=context)
    nodes = pipeline_nodes(True, context)
    probe = rclpy.create_node('probe', context=context)
    commands, diags = [], {}
    probe.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                              lambda m: commands.append(list(m.data)), 100)
    probe.create_subscription(DiagnosticArray, '/diagnostics',
                              lambda m: diags.update({s.name: s for s in m.status}), 100)
    for node in nodes + [probe]:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        manager = nodes[-1]
        assert wait_for(lambda: manager.pipeline_active, timeout=20), manager._status
        assert wait_for(lambda: len(commands) > 30, timeout=10)
        assert wait_for(lambda: {'vla_safety/monitor', 'vla_safety/filter',
                                 'vla_safety/execspec'} <= set(diags), timeout=5)
        contract = nodes[2]._executive.contract
        cmds = np.array(commands)
        assert np.all(cmds >= contract.lower - 1e-9) and np.all(cmds <= contract.upper + 1e-9)
        assert np.all(np.abs(np.diff(cmds, axis=0)) <= contract.max_step() + 1e-9)
        monitor = diags['vla_safety/monitor']
        assert monitor.hardware_id and {kv.key for kv in monitor.values} >= {'reversal_rate',
                                                                           'cusum_statistic'}
    finally:
        executor.shutdown()
        context.try_shutdown()
        thread.join(timeout=5)
