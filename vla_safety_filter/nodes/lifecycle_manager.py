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
The pipeline's lifecycle manager: configure, activate and deactivate managed nodes in order.

Kept apart from the check that decides whether to activate (nodes/execspec_check.py), as nav2
keeps nav2_lifecycle_manager apart from what it manages. Parameters carry nav2's names:
`node_names` (activation order; deactivation is the reverse), `autostart` and
`transition_timeout` (s, per service call). `managed_nodes`, the old name of `node_names`, is
still read for one release, with a deprecation warning.

Every transition is confirmed with GetState. The manager's work runs in coroutines that await
their service calls, so the executor keeps serving every other callback meanwhile; every wait is
bounded on the steady clock. `startup()` (on autostart) configures and activates everything;
subclasses override it to check before they activate. Run alone (`lifecycle_manager`) it brings
up `node_names` without the metadata check; the pipeline's manager is execspec_check.
"""
from __future__ import annotations

import threading
import time

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future

from .common import declare, run
from ..names import PIPELINE_NODES

STATE_NAMES = {State.PRIMARY_STATE_UNCONFIGURED: 'unconfigured',
               State.PRIMARY_STATE_INACTIVE: 'inactive', State.PRIMARY_STATE_ACTIVE: 'active',
               State.PRIMARY_STATE_FINALIZED: 'finalized'}
#: Old parameter name -> new one; the old ones are read for one release.
DEPRECATED_PARAMETERS = {'managed_nodes': 'node_names'}


class ManagerError(RuntimeError):
    """A managed node did not answer or did not reach the requested state."""


def state_name(state_id: int) -> str:
    """Return the name of a primary lifecycle state ('active', ...), else its number."""
    return STATE_NAMES.get(state_id, str(state_id))


def call(client, request, timeout: float, attempts: int = 3):
    """
    Call a service and wait, from a thread that is not spinning the client's node.

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
        """Sleep without blocking the executor."""
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
        """Return the current state id, waited for from a thread not spinning the node."""
        try:
            return call(self._get, GetState.Request(), self.timeout).current_state.id
        except ManagerError as exc:
            raise ManagerError(f'{self.target}: {exc}') from None

    async def get_state(self, waiter: Waiter) -> int:
        """Return the current state id (awaited inside a callback)."""
        try:
            answer = await waiter.call(self._get, GetState.Request(), self.timeout)
        except ManagerError as exc:
            raise ManagerError(f'{self.target}: {exc}') from None
        return answer.current_state.id

    async def transition(self, waiter: Waiter, transition_id: int, expected: int,
                         attempts: int = 2) -> None:
        """
        Request a transition and confirm the resulting state with GetState.

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
                               f'{state_name(got)}, expected {state_name(expected)}{failure}')


class LifecycleManager(Node):
    """Drive the managed nodes' lifecycles in order, one operation at a time."""

    def __init__(self, name: str = 'lifecycle_manager', **kwargs):
        super().__init__(name, **kwargs)
        self.node_names = self._declare_node_names()
        self.autostart = declare(self, 'autostart', True, 'bring the nodes up at startup')
        self.transition_timeout = declare(self, 'transition_timeout', 5.0,
                                          'per service call to a managed node (s)')
        self.callback_group = ReentrantCallbackGroup()
        self.waiter = Waiter(self, self.callback_group)
        self.lifecycle_clients = {name: self.lifecycle_client(name) for name in self.node_names}
        self._work = threading.Lock()
        self.abort_reason: str | None = None
        self._autostart_timer = self.create_timer(
            0.1, self._on_autostart, self.callback_group, clock=self.waiter.clock) \
            if self.autostart else None

    def _declare_node_names(self) -> list:
        """Declare `node_names`; take the deprecated `managed_nodes` if only that is given."""
        names = list(declare(self, 'node_names', list(PIPELINE_NODES),
                             'managed nodes in activation order (deactivation is the reverse)'))
        old = declare(self, 'managed_nodes', Parameter.Type.STRING_ARRAY,
                      'deprecated: use node_names (read for one more release)')
        if old is None:
            return names
        if names != list(PIPELINE_NODES):
            self.get_logger().warning('parameter managed_nodes is deprecated and ignored: '
                                      'node_names is set')
            return names
        self.get_logger().warning('parameter managed_nodes is deprecated: use node_names '
                                  '(managed_nodes will be removed in the next release)')
        self.set_parameters([Parameter('node_names', value=list(old))])
        return list(old)

    def lifecycle_client(self, name: str) -> LifecycleClient:
        """Return the client of a managed node (made once), or of another lifecycle node."""
        name = name.strip('/')
        existing = getattr(self, 'lifecycle_clients', {}).get(name)
        return existing or LifecycleClient(self, name, self.callback_group,
                                           self.transition_timeout)

    # ---- one operation at a time -----------------------------------------------------------
    async def exclusive(self, operation):
        """Run one bringup/teardown at a time (others wait without blocking the executor)."""
        while not self._work.acquire(blocking=False):
            await self.waiter.sleep(0.02)
        try:
            return await operation()
        finally:
            self._work.release()

    def check_abort(self) -> None:
        """Raise ManagerError if the running operation was asked to abort."""
        if self.abort_reason:
            raise ManagerError(self.abort_reason)

    # ---- transitions of every managed node -------------------------------------------------
    async def configure_all(self) -> None:
        """Configure every unconfigured managed node, in order."""
        for name in self.node_names:
            self.check_abort()
            client = self.lifecycle_clients[name]
            if await client.get_state(self.waiter) == State.PRIMARY_STATE_UNCONFIGURED:
                await client.transition(self.waiter, Transition.TRANSITION_CONFIGURE,
                                        State.PRIMARY_STATE_INACTIVE)

    async def activate_all(self) -> None:
        """Activate every inactive managed node in order; confirm that all are active."""
        for name in self.node_names:
            self.check_abort()
            client = self.lifecycle_clients[name]
            if await client.get_state(self.waiter) == State.PRIMARY_STATE_INACTIVE:
                await client.transition(self.waiter, Transition.TRANSITION_ACTIVATE,
                                        State.PRIMARY_STATE_ACTIVE)
        for name in self.node_names:
            got = await self.lifecycle_clients[name].get_state(self.waiter)
            if got != State.PRIMARY_STATE_ACTIVE:
                raise ManagerError(f'{name} is {state_name(got)}, expected active')

    async def deactivate_all(self) -> list[str]:
        """Deactivate every active managed node in reverse order; return the problems, if any."""
        problems = []
        for name in reversed(self.node_names):
            client = self.lifecycle_clients[name]
            try:
                if await client.get_state(self.waiter) == State.PRIMARY_STATE_ACTIVE:
                    await client.transition(self.waiter, Transition.TRANSITION_DEACTIVATE,
                                            State.PRIMARY_STATE_INACTIVE)
            except ManagerError as exc:
                self.get_logger().error(f'deactivate: {exc}')
                problems.append(str(exc))
        return problems

    async def still_active(self) -> list[str]:
        """Return a problem for each managed node GetState does not show inactive."""
        problems = []
        for name in self.node_names:
            try:
                if await self.lifecycle_clients[name].get_state(self.waiter) == \
                        State.PRIMARY_STATE_ACTIVE:
                    problems.append(f'{name} is still active')
            except ManagerError as exc:
                problems.append(str(exc))
        return problems

    # ---- startup -----------------------------------------------------------------------------
    async def startup(self) -> tuple[bool, str]:
        """Configure and activate every managed node; on a failure deactivate them again."""
        self.abort_reason = None
        try:
            await self.configure_all()
            await self.activate_all()
        except ManagerError as exc:
            await self.deactivate_all()
            self.get_logger().error(f'startup failed, deactivated: {exc}')
            return False, f'startup failed: {exc}'
        return True, 'all managed nodes active'

    async def _on_autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        await self.exclusive(self.startup)


def main() -> None:
    """Run a manager without the metadata check: `ros2 run vla_safety_filter lifecycle_manager`."""
    run(LifecycleManager)
