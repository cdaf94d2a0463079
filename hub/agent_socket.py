"""The agents' WebSocket (``/ws``): decode, validate and dispatch each frame; every reply follows its commit."""

from __future__ import annotations

import asyncio
import itertools
import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hub.agents import Agent, AgentState, InvalidAgentTransition
from hub.auth import Role
from hub.limits import note_failed_auth
from hub.queue import OnApplied, TaskNotFound
from hub.tasks import EndReason, TaskStatus, TransitionError
from shared import protocol as P

if TYPE_CHECKING:
    from hub.app import Hub

logger = logging.getLogger(__name__)
_conn_ids = itertools.count(1)
_previous_frame: ContextVar[asyncio.Future[None] | None] = ContextVar("_previous_frame", default=None)
"""Set in each pipelined frame's task: the completion of the frame before it, which its replies must follow."""
MAX_FRAMES_IN_FLIGHT = 64


class Connection:
    """One socket; sends are serialised so concurrent writers never interleave frames."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()
        self.key = f"conn-{next(_conn_ids)}"

    async def send(self, text: str) -> None:
        async with self._lock:
            await self.ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code, reason)
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass  # already gone


class AgentSession:
    """Protocol handling for one agent connection."""

    def __init__(self, hub: Hub, conn: Connection) -> None:
        self.hub = hub
        self.conn = conn
        self.agent: Agent | None = None

    async def reply(self, message: P.Message) -> None:
        previous = _previous_frame.get()
        if previous is not None:
            await previous  # replies leave in the order the frames came in
        await self.conn.send(P.encode(message))

    async def handle_in_order(self, text: str, previous: asyncio.Future[None] | None,
                              done: asyncio.Future[None]) -> None:
        """Handle one frame concurrently with its neighbours (their commits coalesce) but reply in order."""
        _previous_frame.set(previous)
        try:
            if not await self.handle(text):
                await self.conn.close(1008, "closing")
        except (RuntimeError, OSError, WebSocketDisconnect) as exc:
            logger.info("agent socket %s: reply failed: %r", self.conn.key, exc)
        except Exception:
            logger.exception("agent socket %s: handler failed", self.conn.key)
        finally:
            if previous is not None and not previous.done():  # done is monotonic along the socket's frames
                await asyncio.shield(previous)
            done.set_result(None)

    async def violation(self, reply: P.ErrorReply) -> bool:
        """Answer an invalid frame; True when the socket was closed for too many of them."""
        await self.reply(reply)
        key = self.agent.agent_id if self.agent else self.conn.key
        if not self.hub.violations.record(key):
            return False
        cooldown = self.hub.violations.disconnected(key)
        logger.warning("closing %s: too many validation errors (cooldown %.0fs)", key, cooldown)
        await self.conn.close(1008, "too many validation errors")
        return True

    async def handle(self, text: str) -> bool:
        """Process one frame; returns False when the session must end."""
        now = self.hub.clock.now_ms()
        if self.agent is not None:
            self.agent.last_seen = now
        try:
            msg = P.decode_sidecar(text)
        except P.FrameError as exc:
            return not await self.violation(exc.reply)
        if isinstance(msg, P.Identify):
            return await self.identify(msg)
        if self.agent is None:
            return not await self.violation(P.ErrorReply(error="not_identified", message_type=msg.type))
        handler = getattr(self, "on_" + msg.type)
        await handler(self.agent, msg)
        return True

    async def identify(self, msg: P.Identify) -> bool:
        hub = self.hub
        if (wait := hub.violations.cooldown_remaining_s(msg.agent_id)) > 0:
            await self.conn.close(1008, f"cooldown active: retry in {int(wait) + 1}s")
            return False
        principal = hub.auth.verify(msg.token)
        if principal is None:
            note_failed_auth(self.conn.ws)  # counts against the client address (hub/limits.py)
            return not await self.violation(P.ErrorReply(error="invalid_token", message_type="identify"))
        if principal.role is Role.VIEWER or (principal.role is Role.AGENT and principal.agent_id != msg.agent_id):
            return not await self.violation(P.ErrorReply(error="token_agent_mismatch", message_type="identify"))
        if self.agent is not None:
            if self.agent.agent_id != msg.agent_id:
                return not await self.violation(P.ErrorReply(error="already_identified", detail=self.agent.agent_id))
            await self.reply(P.Identified(agent_id=msg.agent_id))
            return True
        now = hub.clock.now_ms()
        agent = Agent(
            agent_id=msg.agent_id, connected_at=now, name=msg.name, capabilities=frozenset(msg.capabilities),
            models=tuple(msg.models), sandbox_level=msg.sandbox_level, client_type=msg.client_type,
            ollama_url=msg.ollama_url, sender=self.conn,
        )
        old = await hub.fleet.connect(agent)
        self.agent = agent
        if old is not None and isinstance(old.sender, Connection):
            await old.sender.close(4000, "replaced by a newer connection")
        await self.reply(P.Identified(agent_id=msg.agent_id))
        logger.info("agent identified agent_id=%s caps=%s sandbox=%s", agent.agent_id, sorted(agent.capabilities),
                    agent.sandbox_level)
        hub.fleet.scheduler.wake()
        return True

    async def on_ping(self, agent: Agent, msg: P.Ping) -> None:
        await self.reply(P.Pong(timestamp=self.hub.clock.now_ms()))

    async def _refused(self, op: str, task_id: str, exc: Exception) -> None:
        code = exc.code if isinstance(exc, TransitionError) else "not_found"
        await self.reply(P.ErrorReply(error=f"{op}: {code}", task_id=task_id, detail=str(exc)))

    async def on_task_accepted(self, agent: Agent, msg: P.TaskAccepted) -> None:
        try:
            await self.hub.queue.accept(msg.task_id, agent.agent_id, msg.generation)
        except (TransitionError, TaskNotFound) as exc:
            await self._refused("task_accept_failed", msg.task_id, exc)
            return
        if agent.state == AgentState.ASSIGNED and agent.current_task_id == msg.task_id:
            await agent.fire("accept", self.hub.clock.now_ms(), msg.task_id)
        if agent.current_task_id == msg.task_id:  # after a reconnect this says what it is doing, as a state_report
            agent.flags.discard("awaiting_state_report")
            agent.awaiting_report_since = None
        agent.flags.discard("unresponsive")  # it answers again
        await self.reply(P.TaskAck(task_id=msg.task_id, status="accepted"))

    async def on_task_progress(self, agent: Agent, msg: P.TaskProgress) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        if task is None or task.assigned_to != agent.agent_id or self.hub.agents.get(agent.agent_id) is not agent or (
            msg.generation is not None and msg.generation != task.generation
        ):
            return  # progress for a task this connection no longer holds (or from a replaced socket): dropped
        self.hub.queue.touch(msg.task_id)
        if msg.execution_event is not None:
            await self.hub.trajectory.append(msg.task_id, agent.agent_id, msg.execution_event)

    async def on_task_complete(self, agent: Agent, msg: P.TaskComplete) -> None:
        try:
            ack = await self.hub.queue.complete(
                msg.task_id, agent.agent_id, msg.generation, msg.result, tokens_used=msg.tokens_used,
                verification_report=msg.verification_report, verification_history=msg.verification_history,
                on_applied=self._freer(agent, msg.task_id),
            )
        except (TransitionError, TaskNotFound) as exc:
            await self._refused("task_complete_failed", msg.task_id, exc)
            return
        await self.reply(P.TaskAck(task_id=msg.task_id, status=ack))  # type: ignore[arg-type]

    def _freer(self, agent: Agent, task_id: str) -> OnApplied:
        """Free the agent as soon as its attempt's end is applied, so its next task joins the same commit."""

        async def free(ack: str) -> None:
            await self.hub.fleet.attempt_ended(agent.agent_id, task_id, ack)

        return free

    async def on_task_failed(self, agent: Agent, msg: P.TaskFailed) -> None:
        error = msg.error or msg.reason or "unspecified failure"
        try:
            ack = await self.hub.queue.fail(msg.task_id, agent.agent_id, msg.generation, error, result=msg.result,
                                            on_applied=self._freer(agent, msg.task_id))
        except (TransitionError, TaskNotFound) as exc:
            await self._refused("task_fail_failed", msg.task_id, exc)
            return
        await self.reply(P.TaskAck(task_id=msg.task_id, status=ack))  # type: ignore[arg-type]

    async def on_task_rejected(self, agent: Agent, msg: P.TaskRejected) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        if task is None or task.assigned_to != agent.agent_id or task.status not in (TaskStatus.ASSIGNED,
                                                                                        TaskStatus.WORKING):
            await self.reply(P.ErrorReply(error="task_reject_failed: not_assigned_to_you", task_id=msg.task_id))
            return
        try:
            await self.hub.queue.reclaim(msg.task_id, EndReason.REJECTED, msg.reason or "rejected",
                                         generation=msg.generation, on_applied=self._freer(agent, msg.task_id))
        except TransitionError as exc:
            await self._refused("task_reject_failed", msg.task_id, exc)
            return
        await self.reply(P.TaskAck(task_id=msg.task_id, status="rejected"))

    async def on_task_recovering(self, agent: Agent, msg: P.TaskRecovering) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        if task is not None and task.assigned_to == agent.agent_id and task.status in (TaskStatus.ASSIGNED,
                                                                                          TaskStatus.WORKING):
            await self._resume(agent, msg.task_id)
            await self.reply(P.TaskContinue(task_id=msg.task_id, generation=task.generation))
        else:
            await self.reply(P.TaskReassign(task_id=msg.task_id))

    async def on_state_report(self, agent: Agent, msg: P.StateReport) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        ok = (
            task is not None and task.assigned_to == agent.agent_id
            and task.status in (TaskStatus.ASSIGNED, TaskStatus.WORKING)
            and (msg.generation is None or msg.generation == task.generation)
        )
        if not ok or task is None:
            await self.reply(P.StateReportAck(task_id=msg.task_id, action="abort"))
            if agent.current_task_id == msg.task_id:
                await self.hub.fleet.attempt_ended(agent.agent_id, msg.task_id, "aborted")
            return
        await self._resume(agent, msg.task_id)
        await self.reply(P.StateReportAck(task_id=msg.task_id, action="continue", generation=task.generation))

    async def _resume(self, agent: Agent, task_id: str) -> None:
        """The agent says it is running ``task_id``: record it as working, so no sweep reclaims it."""
        await self.hub.queue.accept(task_id, agent.agent_id, None)
        self.hub.queue.touch(task_id)
        agent.flags.discard("awaiting_state_report")
        agent.awaiting_report_since = None
        if agent.state in (AgentState.IDLE, AgentState.ASSIGNED):
            try:
                await agent.fire("resume", self.hub.clock.now_ms(), task_id)
            except InvalidAgentTransition as exc:
                logger.warning("resume ignored: %s", exc)

    async def on_resource_report(self, agent: Agent, msg: P.ResourceReport) -> None:
        agent.resources = msg.model_dump(exclude={"type", "protocol_version"}, exclude_none=True)
        agent.resources["reported_at"] = self.hub.clock.now_ms()

    async def on_agent_restarting(self, agent: Agent, msg: P.AgentRestarting) -> None:
        agent.flags.add("restarting")
        logger.info("agent %s restarting: %s", agent.agent_id, msg.reason)


async def serve_agent_socket(ws: WebSocket, hub: Hub) -> None:
    """Run one agent connection until it closes; the agent goes offline, its task waits the reconnect grace."""
    await ws.accept()
    conn = Connection(ws)
    session = AgentSession(hub, conn)
    hub.sockets.add(conn)
    loop = asyncio.get_running_loop()
    in_flight = asyncio.Semaphore(MAX_FRAMES_IN_FLIGHT)
    previous: asyncio.Future[None] | None = None
    try:
        async with asyncio.TaskGroup() as frames:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:  # a binary frame: the protocol is JSON in text frames only
                    if previous is not None:
                        await previous  # its error follows the replies to the frames before it
                    reply = P.ErrorReply(error="invalid_json", detail="binary frames are not accepted; send JSON text")
                    if await session.violation(reply):
                        break
                    continue
                if session.agent is None:  # until identified, frames are handled one at a time
                    if previous is not None:
                        await previous
                    if not await session.handle(text):
                        break
                    continue
                done = loop.create_future()
                await in_flight.acquire()
                frames.create_task(session.handle_in_order(text, previous, done)).add_done_callback(
                    lambda _: in_flight.release()
                )
                previous = done
    except (RuntimeError, OSError, WebSocketDisconnect) as exc:
        logger.info("agent socket %s ended: %r", conn.key, exc)
    finally:
        hub.sockets.discard(conn)
        if session.agent is not None:
            await hub.fleet.disconnect(session.agent)
        await conn.close(1000, "bye")
