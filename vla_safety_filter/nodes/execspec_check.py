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

"""execspec_check: the pipeline manager; nothing moves until the bridge's unnormalizer is checked.

Bringup (at startup with `autostart`, or on `~/bringup`, std_srvs/Trigger): configure every
managed node that is unconfigured; ask the bridge (`/<bridge>/loaded_unnormalizer`) what its last
configure loaded, reconfiguring an inactive bridge first if its parameters changed since; check
that with core.execspec.check_loaded against the checkpoint's metadata (statistics, mode, key,
mask, dimension, `normalized_input`, and dimension names/order where the checkpoint names them;
the report's notes say what was not checked); only if identical, activate in order (monitor ->
filter -> bridge). Every transition is confirmed with GetState. Any refusal, or any change of the
bridge's `unnormalizer.*` / `normalized_input` parameters during bringup, rolls back (deactivates
in reverse order) and reports ERROR on /diagnostics with the reason. The same change while the
pipeline is active deactivates it; `~/bringup` is the recovery after review. `~/teardown`
deactivates on request. Both services answer success only when GetState confirms every managed node
in the expected state (active, resp. not active), otherwise success=False with the reason.

Parameter `policy_outputs_normalized` (default true) states whether the source emits normalized
policy outputs, as a VLA checkpoint with statistics does: then the bridge must run with
`normalized_input: true`. Set it false to replay recordings already in action units.

The services, the parameter watch and autostart are coroutines that await their service calls, so
the executor keeps serving every other callback (also other nodes on a shared single-threaded
executor) meanwhile; every wait is bounded by `transition_timeout` on the steady clock. (rclpy
resumes a waiting coroutine on every executor iteration, so the executor polls while a bringup or
teardown is in flight: a second or so of extra CPU, never a stall.)
"""
from __future__ import annotations

import json
import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterEvent
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import Trigger

from ..core.checkpoints import load_metadata
from ..core.errors import InputError
from ..core.execspec import check_loaded
from .common import ERROR, OK, WARN, Diagnostics, declare, require_valid_parameters, run, status
from .policy_bridge import loaded_parameter_names

STATE_NAMES = {State.PRIMARY_STATE_UNCONFIGURED: 'unconfigured',
               State.PRIMARY_STATE_INACTIVE: 'inactive', State.PRIMARY_STATE_ACTIVE: 'active',
               State.PRIMARY_STATE_FINALIZED: 'finalized'}


class ManagerError(RuntimeError):
    """A managed node did not answer or did not reach the requested state."""


def call(client, request, timeout: float, attempts: int = 3):
    """Call a service and wait, from a thread that is not spinning the client's node.

    For scripts and tests; callbacks use `call_async`. Right after discovery a response can be
    lost, so each attempt waits timeout / attempts before asking again.
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


class Waiter:
    """Awaitable, bounded waits inside a node's coroutine callbacks (steady-clock timers)."""

    def __init__(self, node: Node, group):
        self.node, self.group = node, group
        self.clock = Clock(clock_type=ClockType.STEADY_TIME)

    async def first(self, future: Future | None, timeout: float) -> bool:
        """Wait until `future` is done or `timeout` s pass (None: just sleep); True if done."""
        if future is not None and future.done():
            return True
        wake = Future()

        def finish(_=None):
            if not wake.done():
                wake.set_result(None)
        if future is not None:
            future.add_done_callback(finish)
        timer = self.node.create_timer(timeout, finish, self.group, clock=self.clock)
        try:
            await wake
        finally:
            self.node.destroy_timer(timer)
        return future is not None and future.done()

    async def sleep(self, seconds: float) -> None:
        await self.first(None, seconds)

    async def call(self, client, request, timeout: float, attempts: int = 3):
        """Call a service, retrying an unanswered request; ManagerError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() >= deadline:
                raise ManagerError(f'service {client.srv_name} not available')
            await self.sleep(0.05)
        for _ in range(attempts):
            future = client.call_async(request)
            left = max(deadline - time.monotonic(), 0.0)
            if await self.first(future, max(left / attempts, 0.05)):
                return future.result()
            client.remove_pending_request(future)
        raise ManagerError(f'service {client.srv_name} did not answer in {timeout:g} s')


class LifecycleClient:
    """GetState/ChangeState of one managed node: awaited by the manager, `state()` for scripts."""

    def __init__(self, node: Node, target: str, group, timeout: float):
        self.target, self.timeout = target, timeout
        self._get = node.create_client(GetState, f'/{target}/get_state', callback_group=group)
        self._change = node.create_client(ChangeState, f'/{target}/change_state',
                                          callback_group=group)

    def state(self) -> int:
        """Current state id, waited for from a thread that is not spinning the node."""
        try:
            return call(self._get, GetState.Request(), self.timeout).current_state.id
        except ManagerError as exc:
            raise ManagerError(f'{self.target}: {exc}') from None

    async def get_state(self, waiter: Waiter) -> int:
        try:
            answer = await waiter.call(self._get, GetState.Request(), self.timeout)
        except ManagerError as exc:
            raise ManagerError(f'{self.target}: {exc}') from None
        return answer.current_state.id

    async def transition(self, waiter: Waiter, transition_id: int, expected: int,
                         attempts: int = 2) -> None:
        """Request a transition and confirm the resulting state with GetState.

        An unanswered request is asked again only while GetState shows it has not taken effect
        (asking twice would be an invalid transition).
        """
        request = ChangeState.Request(transition=Transition(id=transition_id))
        failure = ''
        for _ in range(attempts):
            try:
                await waiter.call(self._change, request, self.timeout / attempts, attempts=1)
                break
            except ManagerError as exc:
                failure = f' ({exc})'
                if await self.get_state(waiter) == expected:
                    return
        got = await self.get_state(waiter)
        if got != expected:
            raise ManagerError(f'{self.target}: transition {transition_id} left it '
                               f'{STATE_NAMES.get(got, got)}, expected '
                               f'{STATE_NAMES.get(expected, expected)}{failure}')


class ExecSpecCheck(Node):
    """Gatekeeper and lifecycle manager of the pipeline."""

    def __init__(self, name: str = 'execspec_check', **kwargs):
        super().__init__(name, **kwargs)
        self.checkpoint = declare(self, 'checkpoint', '', 'checkpoint directory or metadata file')
        self.format = declare(self, 'format', 'auto',
                              'auto, openvla, openvla-oft, lerobot or yaml')
        self.unnorm_key = declare(self, 'unnorm_key', '', 'checkpoint statistics key (OpenVLA)')
        self.normalization_type = declare(self, 'normalization_type', '',
                                          'OpenVLA-OFT: BOUNDS or BOUNDS_Q99')
        self.outputs_normalized = declare(
            self, 'policy_outputs_normalized', True,
            'the source emits normalized policy outputs, so the bridge must unnormalize '
            '(normalized_input true); false to replay actions already in action units')
        self.bridge = declare(self, 'bridge_node', 'policy_bridge', 'node carrying unnormalizer.*')
        self.managed = list(declare(self, 'managed_nodes',
                                    ['action_monitor', 'safety_filter', 'policy_bridge'],
                                    'activation order (deactivation is the reverse)'))
        self.autostart = declare(self, 'autostart', True, 'check and activate at startup')
        self._timeout = declare(self, 'transition_timeout', 5.0, 'per service call (s)')
        group = ReentrantCallbackGroup()
        self._waiter = Waiter(self, group)
        self.clients_ = {n: LifecycleClient(self, n, group, self._timeout) for n in self.managed}
        bridge = self.bridge.strip('/')
        self._bridge_client = self.clients_.get(bridge) or \
            LifecycleClient(self, bridge, group, self._timeout)
        self._loaded_client = self.create_client(Trigger, f'/{bridge}/loaded_unnormalizer',
                                                 callback_group=group)
        self._work = threading.Lock()
        self._abort: str | None = None
        self._bringing_up = self._bridge_loaded = False
        self.pipeline_active = False
        self.last_report: dict = {}
        self._status = ('vla_safety/execspec', WARN, 'waiting for the first check', {})
        self.create_subscription(ParameterEvent, '/parameter_events', self._on_parameter_event,
                                 100, callback_group=group)
        self.create_service(Trigger, '~/bringup', self._on_bringup, callback_group=group)
        self.create_service(Trigger, '~/teardown', self._on_teardown, callback_group=group)
        self._diagnostics = Diagnostics(self, 1.0, self.diagnostic_status)
        self._autostart_timer = self.create_timer(0.1, self._on_autostart, group,
                                                  clock=self._waiter.clock) \
            if self.autostart else None

    # ---- serialization ---------------------------------------------------------------------
    async def _exclusive(self, operation):
        """Run one bringup/teardown at a time (others wait without blocking the executor)."""
        while not self._work.acquire(blocking=False):
            await self._waiter.sleep(0.02)
        try:
            return await operation()
        finally:
            self._work.release()

    def _check_abort(self) -> None:
        if self._abort:
            raise ManagerError(self._abort)

    # ---- bringup ---------------------------------------------------------------------------
    async def bringup(self) -> tuple[bool, str]:
        """Configure, check what the bridge loaded, activate; roll back on a refusal or change."""
        self._abort, self._bringing_up, self.last_report = None, True, {}
        self._bridge_loaded = False
        try:
            ok = await self._bringup_steps()
        except ManagerError as exc:
            await self._rollback()
            self._report(ERROR, f'bringup aborted, rolled back: {exc}',
                         {**self._verdict_values(), 'pipeline_active': False})
            ok = False
        finally:
            self._bringing_up = False
        return ok, self._status[2]

    async def _bringup_steps(self) -> bool:
        try:
            require_valid_parameters(self)
            if not self.checkpoint:
                raise InputError('parameter checkpoint is not set')
            reference = load_metadata(self.checkpoint, self.format, self.unnorm_key or None,
                                      self.normalization_type or None)
        except InputError as exc:
            self.last_report = {'verdict': 'cannot_check', 'reasons': [str(exc)]}
            await self._rollback()
            self._report(ERROR, f'cannot check: {exc}', self._verdict_values())
            return False
        await self._configure_all()
        loaded = await self._loaded_unnormalizer()
        result = check_loaded(reference, loaded, self.outputs_normalized)
        self.last_report = {**result.to_report(), 'generation': loaded.get('generation')}
        if result.verdict != 'identical':
            await self._rollback()
            first = result.reasons[0] if result.reasons else ''
            self._report(ERROR, f'refusing to activate: {result.verdict}: {first}',
                         self._verdict_values())
            return False
        await self._activate_all(loaded.get('generation'))
        self.pipeline_active = True
        self._report(OK, 'metadata identical; pipeline active', self._verdict_values())
        return True

    async def _configure_all(self) -> None:
        """Configure unconfigured nodes; reload an inactive bridge whose parameters changed."""
        for name in self.managed:
            self._check_abort()
            client = self.clients_[name]
            if await client.get_state(self._waiter) == State.PRIMARY_STATE_UNCONFIGURED:
                await client.transition(self._waiter, Transition.TRANSITION_CONFIGURE,
                                        State.PRIMARY_STATE_INACTIVE)
        loaded = await self._loaded_unnormalizer()
        bridge = self._bridge_client
        if loaded.get('pending_changes') and \
                await bridge.get_state(self._waiter) == State.PRIMARY_STATE_INACTIVE:
            changed = ', '.join(loaded['pending_changes'])
            self.get_logger().info(f'reconfiguring /{bridge.target}: {changed} changed since '
                                   'configure')
            await bridge.transition(self._waiter, Transition.TRANSITION_CLEANUP,
                                    State.PRIMARY_STATE_UNCONFIGURED)
            await bridge.transition(self._waiter, Transition.TRANSITION_CONFIGURE,
                                    State.PRIMARY_STATE_INACTIVE)
        self._check_abort()

    async def _activate_all(self, generation) -> None:
        """Activate in order; confirm all active and the checked configuration still loaded."""
        for name in self.managed:
            self._check_abort()
            client = self.clients_[name]
            if await client.get_state(self._waiter) == State.PRIMARY_STATE_INACTIVE:
                await client.transition(self._waiter, Transition.TRANSITION_ACTIVATE,
                                        State.PRIMARY_STATE_ACTIVE)
        for name in self.managed:
            got = await self.clients_[name].get_state(self._waiter)
            if got != State.PRIMARY_STATE_ACTIVE:
                raise ManagerError(f'{name} is {STATE_NAMES.get(got, got)}, expected active')
        loaded = await self._loaded_unnormalizer()
        if loaded.get('generation') != generation or loaded.get('pending_changes'):
            raise ManagerError(f'/{self._bridge_client.target} was reconfigured or its '
                               'unnormalizer parameters changed during bringup')
        self._check_abort()

    async def _loaded_unnormalizer(self) -> dict:
        """The bridge's report of what its last configure loaded (JSON in a Trigger reply)."""
        answer = await self._waiter.call(self._loaded_client, Trigger.Request(), self._timeout)
        try:
            report = json.loads(answer.message)
        except ValueError:
            raise ManagerError(f'{self._loaded_client.srv_name} answered no JSON report') from None
        if not isinstance(report, dict):
            raise ManagerError(f'{self._loaded_client.srv_name} answered no JSON object')
        self._bridge_loaded = self._bridge_loaded or bool(report.get('configured'))
        return report

    # ---- teardown --------------------------------------------------------------------------
    async def _rollback(self) -> list[str]:
        """Deactivate every active managed node in reverse order; the problems, if any."""
        self.pipeline_active = False
        problems = []
        for name in reversed(self.managed):
            client = self.clients_[name]
            try:
                if await client.get_state(self._waiter) == State.PRIMARY_STATE_ACTIVE:
                    await client.transition(self._waiter, Transition.TRANSITION_DEACTIVATE,
                                            State.PRIMARY_STATE_INACTIVE)
            except ManagerError as exc:
                self.get_logger().error(f'rollback: {exc}')
                problems.append(str(exc))
        return problems

    async def teardown(self, why: str) -> tuple[bool, str]:
        """Deactivate the pipeline; success only if GetState shows no managed node active."""
        problems = await self._rollback()
        for name in self.managed:
            try:
                if await self.clients_[name].get_state(self._waiter) == State.PRIMARY_STATE_ACTIVE:
                    problems.append(f'{name} is still active')
            except ManagerError as exc:
                problems.append(str(exc))
        message = why if not problems else f'{why}; teardown incomplete: {"; ".join(problems)}'
        self._report(ERROR, message, {'verdict': 'deactivated'})
        return not problems, message

    # ---- callbacks -------------------------------------------------------------------------
    async def _on_autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        await self._exclusive(self.bringup)

    async def _on_parameter_event(self, event: ParameterEvent) -> None:
        """A change of what the bridge unnormalizes with aborts a bringup or tears down.

        `new_parameters` (a parameter without a value set) count once this bringup has seen the
        bridge configured; before, they may be the declarations of a bridge that is starting.
        """
        if event.node.strip('/') != self.bridge.strip('/'):
            return
        watched = set(loaded_parameter_names())
        new = event.new_parameters if self._bridge_loaded or not self._bringing_up else ()
        changed = [p.name for p in (*new, *event.changed_parameters, *event.deleted_parameters)
                   if p.name in watched]
        if not changed:
            return
        what = f'parameter(s) {", ".join(changed)} of /{self.bridge.strip("/")} changed'
        if self._bringing_up:
            self._abort = f'{what} during bringup'
        elif self.pipeline_active:
            self.pipeline_active = False

            async def deactivate():
                return await self.teardown(f'{what} while active: pipeline deactivated; '
                                           'call ~/bringup after review')
            await self._exclusive(deactivate)

    async def _on_bringup(self, request, response):
        response.success, response.message = await self._exclusive(self.bringup)
        return response

    async def _on_teardown(self, request, response):
        if self._bringing_up:
            self._abort = 'teardown requested'

        async def deactivate():
            return await self.teardown('pipeline deactivated on request')
        response.success, response.message = await self._exclusive(deactivate)
        return response

    # ---- diagnostics -----------------------------------------------------------------------
    def _verdict_values(self) -> dict:
        report = self.last_report
        values = {k: report.get(k) for k in ('verdict', 'mean_drift', 'max_drift', 'mode',
                                             'generation')}
        values['reasons'] = '; '.join(report.get('reasons') or [])
        values['notes'] = '; '.join(report.get('notes') or [])
        return values

    def _report(self, level: bytes, message: str, values: dict) -> None:
        if level == OK:
            self.get_logger().info(message)
        else:
            self.get_logger().error(message)
        self._status = ('vla_safety/execspec', level, message, values)
        self._diagnostics.publish()

    def diagnostic_status(self) -> DiagnosticStatus:
        """The `vla_safety/execspec` status (the one function both /diagnostics paths publish)."""
        name, level, message, values = self._status
        return status(name, level, message, self.get_name(),
                      {'checkpoint': self.checkpoint, 'pipeline_active': self.pipeline_active,
                       **values})


def main() -> None:
    run(ExecSpecCheck)
