"""Two changes to Flower's simulation engine while a fedads simulation runs, and why.

Both patch flwr 1.42 internals inside a context manager, restore them on exit, and do nothing
(yield ``False``) when the patched function does not have the expected parameters, so another
Flower version runs unpatched and only slower. They change *when* and *where* a message is
handled, never what it carries.

* :func:`engine_polling`: the engine moves new messages to its workers in a loop that waits a
  hard-coded 0.1 s between passes (``vce_api.add_messages_to_queue``); every message waited
  0-0.1 s before a party saw it (71 round trips of an exact-mode epoch cost ~9 s of waiting).
* :func:`actor_affinity`: the Ray backend hands each message to whichever actor was returned
  to its pool last (``BasicActorPool.submit``), so with two parties working at once a party's
  message often landed on the actor holding the *other* party live, and the ClientApp restored
  its party there from the last checkpoint (a quarter of all messages in a pipelined run, 50 ms
  each on average at 200k rows). Here each node keeps the actor it was first given while that
  actor is idle, and a new node prefers an actor no other node holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def _expects(function: Callable[..., Any], parameters: tuple[str, ...]) -> bool:
    return tuple(inspect.signature(function).parameters) == parameters


@contextmanager
def engine_polling(interval_s: float) -> Iterator[bool]:
    """The engine checks for new messages every ``interval_s`` seconds (Flower: 0.1 s).

    Yields whether Flower's feeder was replaced.
    """
    from flwr.server.superlink.fleet.vce import vce_api

    original = vce_api.add_messages_to_queue
    if not _expects(original, ("state", "queue", "nodes_mapping", "f_stop")):
        yield False
        return

    def feeder(state: Any, queue: Any, nodes_mapping: Mapping[int, int], f_stop: Any) -> None:
        while not f_stop.is_set():
            for node_id in nodes_mapping:
                for message in state.get_message_ins(node_id=node_id, limit=1):
                    queue.put(message)
            f_stop.wait(interval_s)

    vce_api.add_messages_to_queue = feeder
    try:
        yield True
    finally:
        vce_api.add_messages_to_queue = original


def pick_actor(pool: list[Any], owners: dict[str, Any], cid: str) -> Any:
    """Remove and return the idle actor for node ``cid`` from ``pool`` (a list of idle actors).

    ``owners`` maps node (partition) id to the actor it was first given: that actor if idle;
    otherwise, for a node without one, the last idle actor no other node owns (recorded as its
    own); otherwise the last idle actor, as Flower would pick. Actors compare by identity.
    """
    preferred = owners.get(cid)
    for index, actor in enumerate(pool):
        if actor is preferred:
            return pool.pop(index)
    owned = {id(actor) for node, actor in owners.items() if node != cid}
    for index in range(len(pool) - 1, -1, -1):
        if id(pool[index]) not in owned:
            actor = pool.pop(index)
            owners.setdefault(cid, actor)
            return actor
    return pool.pop()


@contextmanager
def actor_affinity() -> Iterator[bool]:
    """Each simulated node keeps its own Ray actor (see module doc). Yields whether patched."""
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    original = BasicActorPool.submit
    if not _expects(original, ("self", "actor_fn", "job")):
        yield False
        return

    def submit(self: Any, actor_fn: Any, job: tuple[Any, Any, str, Any]) -> Any:
        owners = self.__dict__.setdefault("_fedads_owners", {})
        actor = pick_actor(self.pool, owners, str(job[2]))
        app_fn, message, cid, context = job
        future = actor_fn(actor, app_fn, message, cid, context)
        self._future_to_actor[future] = actor  # how Flower puts the actor back in the pool
        return future

    BasicActorPool.submit = submit  # type: ignore[method-assign]
    try:
        yield True
    finally:
        BasicActorPool.submit = original  # type: ignore[method-assign]
