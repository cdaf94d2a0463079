"""The agents' WebSocket (``/ws``): decode, validate and dispatch each frame; every reply follows its commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.agents import Agent, AgentState, InvalidAgentTransition, executors_of
from hub.auth import Principal, Role
from hub.connection import Connection, SendLimits
from hub.limits import client_address, note_failed_auth
from hub.queue import OnApplied
from hub.repos.wiring import send_registry
from hub.task_index import TaskNotFound
from hub.tasks import EndReason, TaskStatus, TransitionError
from shared import protocol as P

if TYPE_CHECKING:
    from hub.hub import Hub

__all__ = ["AgentSession", "Connection", "serve_agent_socket"]
logger = logging.getLogger(__name__)
_previous_frame: ContextVar[asyncio.Future[None] | None] = ContextVar("_previous_frame", default=None)
"""Set in each pipelined frame's task: the completion of the frame before it, which its replies must follow."""
MAX_FRAMES_IN_FLIGHT = 64


class AgentSession:
    """Protocol handling for one agent connection."""

    def __init__(self, hub: Hub, conn: Connection) -> None:
        self.hub = hub
        self.conn = conn
        self.agent: Agent | None = None
        self.revoked = False
        self.unwatch: dict[str, Callable[[], None]] = {}
        """Per token id this socket identified with: stops watching it for revocation (called when it ends)."""

    def watch(self, principal: Principal) -> None:
        if principal.token_id not in self.unwatch:
            self.unwatch[principal.token_id] = self.hub.auth.watch(principal.token_id, self.on_revoked)

    async def on_revoked(self) -> None:
        """Its token was revoked: off the fleet at once (no further task_assign), then closed with 4401. A task
        in flight follows the usual disconnect path (the reconnect grace, then the sweep)."""
        self.revoked = True
        if self.agent is not None:
            await self.hub.fleet.disconnect(self.agent)
        await self.conn.close(4401, "token revoked")

    async def reply(self, message: P.Message) -> None:
        previous = _previous_frame.get()
        if previous is not None:
            await previous  # replies leave in the order the frames came in
        await self.conn.send(P.encode(message))

    async def handle_in_order(
        self, text: str, previous: asyncio.Future[None] | None, done: asyncio.Future[None]
    ) -> None:
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
        if self.revoked:
            return False
        now = self.hub.clock.now_ms()
        if self.agent is not None:
            self.agent.last_seen = now
        try:
            msg = P.decode_sidecar(text)
        except P.FrameError as exc:
            if exc.reply.error == "unsupported_protocol_version":  # a peer we cannot talk to, not a bad one
                await self.reply(exc.reply)
                logger.warning("closing %s: %s", self.conn.key, exc.reply.detail)
                await self.conn.close(4426, "unsupported protocol version")
                return False
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
        self.watch(principal)  # no await since verify: a revocation from here on reaches this socket
        if self.agent is not None:
            if self.agent.agent_id != msg.agent_id:
                return not await self.violation(P.ErrorReply(error="already_identified", detail=self.agent.agent_id))
            await self.reply(P.Identified(agent_id=msg.agent_id))
            return True
        now = hub.clock.now_ms()
        agent = Agent(
            agent_id=msg.agent_id,
            connected_at=now,
            name=msg.name,
            capabilities=frozenset(msg.capabilities),
            models=tuple(msg.models),
            sandbox_level=msg.sandbox_level,
            client_type=msg.client_type,
            ollama_url=msg.ollama_url,
            pm2_name=pm2_name(msg.pm2_info),
            sender=self.conn,
            executors=executors_of(msg.executors, msg.client_type, msg.capabilities, msg.ollama_url),
        )
        old = await hub.fleet.connect(agent)
        self.agent = agent
        if self.revoked:  # revoked while it was being registered
            await hub.fleet.disconnect(agent)
            return False
        if old is not None and old.sender is not None:
            await old.sender.close(4000, "replaced by a newer connection")  # only asks: never waits on the old peer
        await self.reply(P.Identified(agent_id=msg.agent_id))
        logger.info(
            "agent identified agent_id=%s caps=%s sandbox=%s",
            agent.agent_id,
            sorted(agent.capabilities),
            agent.sandbox_level,
        )
        if len(hub.repos):
            await send_registry(hub.fleet, agent)  # answered by repo_reach; until then no task with a repo
        await hub.endpoints.agent_reported(
            agent.agent_id, msg.ollama_url, msg.models, client_address(self.conn.ws.scope)
        )
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
        if (
            task is None
            or task.assigned_to != agent.agent_id
            or self.hub.agents.get(agent.agent_id) is not agent
            or (task.status not in (TaskStatus.ASSIGNED, TaskStatus.WORKING))
            or (msg.generation is not None and msg.generation != task.generation)
        ):
            self.hub.trajectory.n_refused += 1
            return  # progress for a task this connection does not hold now (or from a replaced socket): dropped
        self.hub.queue.touch(msg.task_id)
        if msg.execution_event is not None:
            await self.hub.trajectory.append(msg.task_id, agent.agent_id, msg.execution_event)

    async def on_task_complete(self, agent: Agent, msg: P.TaskComplete) -> None:
        try:
            ack = await self.hub.queue.complete(
                msg.task_id,
                agent.agent_id,
                msg.generation,
                msg.result,
                tokens_used=msg.tokens_used,
                usage=msg.reported_usage,
                verification_report=msg.verification_report,
                verification_history=msg.verification_history,
                on_applied=self._freer(agent, msg.task_id),
            )
        except (TransitionError, TaskNotFound) as exc:
            await self._refused("task_complete_failed", msg.task_id, exc)
            return
        await self.hub.costs.on_attempt_end(agent.agent_id, msg.task_id, msg.generation, msg.reported_usage)
        await self.reply(P.TaskAck(task_id=msg.task_id, status=ack))  # type: ignore[arg-type]

    def _freer(self, agent: Agent, task_id: str) -> OnApplied:
        """Free the agent as soon as its attempt's end is applied, so its next task joins the same commit."""

        async def free(ack: str) -> None:
            await self.hub.fleet.attempt_ended(agent.agent_id, task_id, ack)

        return free

    async def on_task_failed(self, agent: Agent, msg: P.TaskFailed) -> None:
        error = msg.error or msg.reason or "unspecified failure"
        try:
            ack = await self.hub.queue.fail(
                msg.task_id,
                agent.agent_id,
                msg.generation,
                error,
                result=msg.result,
                on_applied=self._freer(agent, msg.task_id),
                usage=msg.reported_usage,
                verification_report=msg.verification_report,
                reason=EndReason.reported(msg.reason),
            )
        except (TransitionError, TaskNotFound) as exc:
            await self._refused("task_fail_failed", msg.task_id, exc)
            return
        await self.hub.costs.on_attempt_end(agent.agent_id, msg.task_id, msg.generation, msg.reported_usage)
        await self.reply(P.TaskAck(task_id=msg.task_id, status=ack))  # type: ignore[arg-type]

    async def on_task_rejected(self, agent: Agent, msg: P.TaskRejected) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        if (
            task is None
            or task.assigned_to != agent.agent_id
            or task.status not in (TaskStatus.ASSIGNED, TaskStatus.WORKING)
        ):
            await self.reply(P.ErrorReply(error="task_reject_failed: not_assigned_to_you", task_id=msg.task_id))
            return
        try:
            await self.hub.queue.reclaim(
                msg.task_id,
                EndReason.REJECTED,
                msg.reason or "rejected",
                generation=msg.generation,
                on_applied=self._freer(agent, msg.task_id),
            )
        except TransitionError as exc:
            await self._refused("task_reject_failed", msg.task_id, exc)
            return
        await self.reply(P.TaskAck(task_id=msg.task_id, status="rejected"))

    async def on_task_recovering(self, agent: Agent, msg: P.TaskRecovering) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        if (
            task is not None
            and task.assigned_to == agent.agent_id
            and task.status in (TaskStatus.ASSIGNED, TaskStatus.WORKING)
        ):
            await self._resume(agent, msg.task_id)
            await self.reply(P.TaskContinue(task_id=msg.task_id, generation=task.generation))
        else:
            await self.reply(P.TaskReassign(task_id=msg.task_id))

    async def on_state_report(self, agent: Agent, msg: P.StateReport) -> None:
        task = self.hub.queue.tasks.get(msg.task_id)
        ok = (
            task is not None
            and task.assigned_to == agent.agent_id
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

    async def on_repo_reach(self, agent: Agent, msg: P.RepoReach) -> None:
        agent.reachable_repos = frozenset(msg.reachable)
        for repo in msg.unreachable:
            logger.info("agent %s cannot reach repository %s: %s", agent.agent_id, repo.name, repo.reason)
        self.hub.fleet.version += 1  # what the fleet can run changed: waiting reasons are looked at again
        self.hub.fleet.scheduler.wake()

    async def on_budget_request(self, agent: Agent, msg: P.BudgetRequest) -> None:
        await self.reply(self.hub.costs.on_budget_request(agent.agent_id, msg))  # reserved before any await

    async def on_usage_report(self, agent: Agent, msg: P.UsageReport) -> None:
        if (error := await self.hub.costs.on_usage_report(agent.agent_id, msg)) is not None:
            await self.reply(P.ErrorReply(error=f"usage_report_failed: {error}", task_id=msg.task_id))


def pm2_name(info: object) -> str | None:
    """The pm2 process name from ``identify``'s ``pm2_info`` (``{"name": ...}``), if it is a short string."""
    name = info.get("name") if isinstance(info, dict) else None
    return name[:128] if isinstance(name, str) and name else None


async def serve_agent_socket(ws: WebSocket, hub: Hub) -> None:
    """Run one agent connection until it closes; the agent goes offline, its task waits the reconnect grace.

    Replies and pushes only queue on the connection; its writer (in this handler's TaskGroup) sends them, so a
    peer that stops reading is dropped after its send budget or deadline and never holds up anyone else.
    """
    await ws.accept()
    conn = Connection(ws, SendLimits.of(hub.settings), hub.fleet.socket_counters)
    session = AgentSession(hub, conn)
    hub.sockets.add(conn)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(conn.run(), name=f"writer-{conn.key}")
            try:
                await _read_frames(ws, hub, session)
            except (RuntimeError, OSError, WebSocketDisconnect) as exc:
                logger.info("agent socket %s ended: %r", conn.key, exc)
            finally:
                await conn.close(1000, "bye")  # after the replies already queued; the writer bounds it
                if session.agent is not None:
                    await hub.fleet.disconnect(session.agent)
    finally:
        hub.sockets.discard(conn)
        for unwatch in session.unwatch.values():
            unwatch()


async def _read_frames(ws: WebSocket, hub: Hub, session: AgentSession) -> None:
    """Read frames until the socket ends; an agent that has not identified within ``identify_timeout_s`` is closed."""
    conn = session.conn
    loop = asyncio.get_running_loop()
    identify_by = loop.time() + hub.settings.identify_timeout_s
    in_flight = asyncio.Semaphore(MAX_FRAMES_IN_FLIGHT)
    previous: asyncio.Future[None] | None = None
    async with asyncio.TaskGroup() as frames:
        while True:
            if session.agent is None:
                try:
                    async with asyncio.timeout_at(identify_by):
                        message = await ws.receive()
                except TimeoutError:
                    hub.fleet.socket_counters.n_identify_timeouts += 1
                    logger.info("agent socket %s: no identify within %.0fs", conn.key, hub.settings.identify_timeout_s)
                    await conn.close(4408, "identify timeout")
                    return
            else:
                message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:  # a binary frame: the protocol is JSON in text frames only
                if previous is not None:
                    await previous  # its error follows the replies to the frames before it
                reply = P.ErrorReply(error="invalid_json", detail="binary frames are not accepted; send JSON text")
                if await session.violation(reply):
                    return
                continue
            if session.agent is None:  # until identified, frames are handled one at a time
                if previous is not None:
                    await previous
                if not await session.handle(text):
                    return
                continue
            done = loop.create_future()
            await in_flight.acquire()
            frames.create_task(session.handle_in_order(text, previous, done)).add_done_callback(
                lambda _: in_flight.release()
            )
            previous = done
