"""execspec_check: the pipeline manager. Nothing moves until the bridge's unnormalizer matches the checkpoint.

It reads policy_bridge's live `unnormalizer.*` parameters, loads the checkpoint's metadata, and
only if core.execspec.check_metadata says `identical` configures and activates the managed nodes in
order (monitor -> filter -> bridge), confirming each transition with GetState. Any refusal rolls
back what is already active, in reverse order. A change of the bridge's unnormalizer parameters
while active deactivates the pipeline. The verdict and drift certificate go to /diagnostics.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterEvent
from rcl_interfaces.srv import GetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from std_srvs.srv import Trigger

from ..core.checkpoints import load_metadata
from ..core.errors import InputError
from ..core.execspec import PARAM_PREFIX, check_metadata, metadata_from_params
from .common import ERROR, OK, WARN, Diagnostics, declare, require_valid_parameters, run, status
from .policy_bridge import unnormalizer_parameter_names


class ManagerError(RuntimeError):
    """A managed node did not answer or did not reach the requested state."""


def call(client, request, timeout: float, attempts: int = 3):
    """Call a service and wait from a worker thread, retrying an unanswered request.

    Right after discovery the response can be lost (the server's reply writer is not yet matched
    with this client), so each attempt waits timeout / attempts before asking again.
    """
    if not client.wait_for_service(timeout_sec=timeout):
        raise ManagerError(f'service {client.srv_name} not available')
    for _ in range(attempts):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout / attempts
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.002)
        if future.done():
            return future.result()
        client.remove_pending_request(future)
    raise ManagerError(f'service {client.srv_name} did not answer in {timeout:g} s')


class LifecycleClient:
    """GetState/ChangeState of one managed node, waited on from a worker thread."""

    def __init__(self, node: Node, target: str, group, timeout: float):
        self.target, self.timeout = target, timeout
        self._get = node.create_client(GetState, f'/{target}/get_state', callback_group=group)
        self._change = node.create_client(ChangeState, f'/{target}/change_state', callback_group=group)

    def state(self) -> int:
        try:
            return call(self._get, GetState.Request(), self.timeout).current_state.id
        except ManagerError as exc:
            raise ManagerError(f'{self.target}: {exc}') from None

    def transition(self, transition_id: int, expected: int, attempts: int = 3) -> None:
        """Request a transition and confirm the resulting state (ChangeState.success is not enough).

        An unanswered request is asked again only while GetState shows it has not taken effect.
        """
        request = ChangeState.Request(transition=Transition(id=transition_id))
        for _ in range(attempts):
            try:
                call(self._change, request, self.timeout / attempts, attempts=1)
                break
            except ManagerError:
                if self.state() == expected:
                    return
        got = self.state()
        if got != expected:
            raise ManagerError(f'{self.target}: transition {transition_id} left it in state {got}, '
                               f'expected {expected}')


class ExecSpecCheck(Node):
    """Gatekeeper and lifecycle manager of the pipeline."""

    def __init__(self, name: str = 'execspec_check', **kwargs):
        super().__init__(name, **kwargs)
        self.checkpoint = declare(self, 'checkpoint', '', 'checkpoint directory or metadata file')
        self.format = declare(self, 'format', 'auto', 'auto, openvla, openvla-oft, lerobot or yaml')
        self.unnorm_key = declare(self, 'unnorm_key', '', 'checkpoint statistics key (OpenVLA)')
        self.normalization_type = declare(self, 'normalization_type', '',
                                          'OpenVLA-OFT: BOUNDS or BOUNDS_Q99')
        self.bridge = declare(self, 'bridge_node', 'policy_bridge', 'node carrying unnormalizer.*')
        self.managed = list(declare(self, 'managed_nodes',
                                    ['action_monitor', 'safety_filter', 'policy_bridge'],
                                    'activation order (deactivation is the reverse)'))
        self.autostart = declare(self, 'autostart', True, 'check and activate at startup')
        timeout = declare(self, 'transition_timeout', 5.0, 'per service call (s)')
        group = ReentrantCallbackGroup()
        self.clients_ = {n: LifecycleClient(self, n, group, timeout) for n in self.managed}
        self._params = self.create_client(GetParameters, f'/{self.bridge}/get_parameters',
                                          callback_group=group)
        self._timeout = timeout
        self._work = threading.Lock()
        self.pipeline_active = False
        self.last_report: dict = {}
        self._status = ('vla_safety/execspec', WARN, 'waiting for the first check', {})
        self.create_subscription(ParameterEvent, '/parameter_events', self._on_parameter_event, 100,
                                 callback_group=group)
        self.create_service(Trigger, '~/bringup', self._on_bringup, callback_group=group)
        self.create_service(Trigger, '~/teardown', self._on_teardown, callback_group=group)
        self._diagnostics = Diagnostics(self, 1.0, self.diagnostic_status)
        if self.autostart:
            threading.Thread(target=self.bringup, daemon=True).start()

    # ---- check -----------------------------------------------------------------------------
    def _bridge_params(self) -> dict:
        """The bridge's unnormalizer parameters that are set (asked one by one: rclpy answers a
        GetParameters request that names an uninitialized parameter with no values at all)."""
        values = {}
        for name in unnormalizer_parameter_names():
            try:
                answer = call(self._params, GetParameters.Request(names=[name]),
                              self._timeout).values
            except ManagerError as exc:
                raise ManagerError(f'{self.bridge}: {exc}') from None
            py = parameter_value_to_python(answer[0]) if answer else None
            if py is not None and py != '':
                values[name] = py if isinstance(py, (str, int)) else list(py)
        return values

    def check(self):
        """The verdict of core.execspec for the live bridge parameters against the checkpoint."""
        require_valid_parameters(self)
        if not self.checkpoint:
            raise InputError('parameter checkpoint is not set')
        reference = load_metadata(self.checkpoint, self.format, self.unnorm_key or None,
                                  self.normalization_type or None)
        deployed = metadata_from_params(self._bridge_params(), f'/{self.bridge} parameters')
        return check_metadata(reference, deployed)

    # ---- pipeline --------------------------------------------------------------------------
    def bringup(self) -> bool:
        """Check, then configure all and activate all in order; roll back on any refusal."""
        with self._work:
            try:
                result = self.check()
            except (InputError, ManagerError) as exc:
                self._report(ERROR, f'cannot check: {exc}', {'verdict': 'cannot_check'})
                self._rollback()
                return False
            report = result.to_report()
            self.last_report = report
            values = {k: report[k] for k in ('verdict', 'mean_drift', 'max_drift', 'mode')}
            values.update({'reasons': '; '.join(report['reasons'])})
            if result.verdict != 'identical':
                self._report(ERROR, f'refusing to activate: {result.verdict}: '
                             f'{report["reasons"][0] if report["reasons"] else ""}', values)
                self._rollback()
                return False
            try:
                for name in self.managed:
                    if self.clients_[name].state() == State.PRIMARY_STATE_UNCONFIGURED:
                        self.clients_[name].transition(Transition.TRANSITION_CONFIGURE,
                                                       State.PRIMARY_STATE_INACTIVE)
                for name in self.managed:
                    if self.clients_[name].state() == State.PRIMARY_STATE_INACTIVE:
                        self.clients_[name].transition(Transition.TRANSITION_ACTIVATE,
                                                       State.PRIMARY_STATE_ACTIVE)
            except ManagerError as exc:
                self._report(ERROR, f'activation failed, rolled back: {exc}', values)
                self._rollback()
                return False
            self.pipeline_active = True
            self._report(OK, 'metadata identical; pipeline active', values)
            return True

    def _rollback(self) -> None:
        """Deactivate every active managed node in reverse order (best effort, logged)."""
        self.pipeline_active = False
        for name in reversed(self.managed):
            try:
                if self.clients_[name].state() == State.PRIMARY_STATE_ACTIVE:
                    self.clients_[name].transition(Transition.TRANSITION_DEACTIVATE,
                                                   State.PRIMARY_STATE_INACTIVE)
            except ManagerError as exc:
                self.get_logger().error(f'rollback: {exc}')

    def teardown(self, why: str) -> None:
        with self._work:
            self._rollback()
            self._report(ERROR, why, {'verdict': 'deactivated'})

    def _on_parameter_event(self, event: ParameterEvent) -> None:
        if event.node.lstrip('/') != self.bridge.lstrip('/') or not self.pipeline_active:
            return
        changed = [p.name for p in (*event.new_parameters, *event.changed_parameters,
                                    *event.deleted_parameters) if p.name.startswith(PARAM_PREFIX)]
        if changed:
            self.pipeline_active = False
            threading.Thread(target=self.teardown, daemon=True, args=(
                f'unnormalizer parameter(s) {", ".join(changed)} of /{self.bridge} changed while '
                'active: pipeline deactivated; call ~/bringup after review',)).start()

    def _on_bringup(self, request, response):
        response.success = self.bringup()
        response.message = self._status[2]
        return response

    def _on_teardown(self, request, response):
        self.teardown('pipeline deactivated on request')
        response.success, response.message = True, self._status[2]
        return response

    # ---- diagnostics -----------------------------------------------------------------------
    def _report(self, level: bytes, message: str, values: dict) -> None:
        if level == OK:
            self.get_logger().info(message)
        else:
            self.get_logger().error(message)
        self._status = ('vla_safety/execspec', level, message, values)
        self._publish_status()

    def _publish_status(self) -> None:
        self._diagnostics.publish()

    def diagnostic_status(self) -> DiagnosticStatus:
        """The `vla_safety/execspec` status (the one function both /diagnostics paths publish)."""
        name, level, message, values = self._status
        return status(name, level, message, self.get_name(),
                      {'checkpoint': self.checkpoint, 'pipeline_active': self.pipeline_active, **values})


def main() -> None:
    run(ExecSpecCheck)
