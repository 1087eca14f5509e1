"""Three changes to Flower's simulation engine while a fedads simulation runs, and why.

All patch flwr internals inside a context manager and restore them on exit. Each is applied only
when the installed ``flwr.__version__`` is exactly :data:`PATCHED_FLWR_VERSION` (the version they
were written and measured for) *and* the patched function has the expected parameters;
otherwise it is skipped with a logged warning (logger ``fedads.flower.engine``) and the
simulation runs unpatched: correct, only slower. ``FEDADS_FLOWER_PATCHES=0`` in the environment,
or ``run_federation(..., engine_patches=False)``, turns all three off. They change *when* and
*where* a message is handled, never what it carries. Use them through :func:`engine_patches`.

* :func:`engine_polling`: the engine moves new messages to its workers in a loop that waits a
  hard-coded 0.1 s between passes (``vce_api.add_messages_to_queue``); every message waited
  0-0.1 s before a party saw it (71 round trips of an exact-mode epoch cost ~9 s of waiting).
  Here the loop waits at most ``interval_s``, and not at all once :func:`engine_wakeups` is on.
* :func:`engine_wakeups`: the in-memory link state signals when it stores a message or a
  reply, so the feeder above and the ServerApp's reply loop (``fedads.flower.transport``, same
  process in simulation) wake at once instead of polling every 2 ms: no polling delay and no
  CPU spent on wake-ups that find nothing, which the parties on a 2-core machine felt.
* :func:`actor_affinity`: the Ray backend hands each message to whichever actor was returned
  to its pool last (``BasicActorPool.submit``), so with two parties working at once a party's
  message often landed on the actor holding the *other* party live, and the ClientApp restored
  its party there from the last checkpoint (a quarter of all messages in a pipelined run, 50 ms
  each on average at 200k rows). Here each node keeps the actor it was first given while that
  actor is idle, and a new node prefers an actor no other node holds. The same patch hands the
  actor an :class:`AppLoader` in place of Flower's ClientApp loader closure, which Ray
  re-pickled by value for every message (roughly 3-4 ms of driver CPU each).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

#: The flwr version the patches were written for; any other version runs unpatched.
PATCHED_FLWR_VERSION = "1.42.0"
#: Environment variable: ``0`` / ``false`` / ``off`` turns the patches off.
PATCHES_ENV = "FEDADS_FLOWER_PATCHES"

LOG = logging.getLogger("fedads.flower.engine")

#: Longest wait between checks while :func:`engine_wakeups` is on: a safety net only, every
#: stored message wakes the waiter at once.
WAKEUP_FALLBACK_S = 0.1


def _expects(function: Callable[..., Any], parameters: tuple[str, ...]) -> bool:
    return tuple(inspect.signature(function).parameters) == parameters


def installed_flwr_version() -> str:
    import flwr

    return str(getattr(flwr, "__version__", "unknown"))


def patch_applies(name: str, function: Callable[..., Any], parameters: tuple[str, ...]) -> bool:
    """Whether patch ``name`` of ``function`` may be applied; if not, log a warning saying why."""
    installed = installed_flwr_version()
    if installed != PATCHED_FLWR_VERSION:
        reason = f"written for flwr {PATCHED_FLWR_VERSION}, installed flwr is {installed}"
    elif not _expects(function, parameters):
        found = tuple(inspect.signature(function).parameters)
        reason = f"{function.__qualname__} takes {found}, the patch expects {parameters}"
    else:
        return True
    LOG.warning(
        "Flower engine patch %r skipped: %s. The simulation runs unpatched: correct, but round "
        "trips are slower (docs/flower.md, 'Engine patches').",
        name,
        reason,
    )
    return False


def patches_enabled(enabled: bool | None = None) -> bool:
    """``enabled`` if given, else the environment variable :data:`PATCHES_ENV` (default on)."""
    if enabled is not None:
        return bool(enabled)
    return os.environ.get(PATCHES_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def engine_patches(interval_s: float, enabled: bool | None = None) -> Iterator[dict[str, bool]]:
    """All three patches (wake-ups, polling, actor affinity) while the block runs.

    Args:
        interval_s: the feeder's wait between checks without wake-ups (run config
            ``poll-interval-s``).
        enabled: ``False`` applies none; ``None`` reads :data:`PATCHES_ENV`.

    Yields:
        ``{"wakeups": bool, "polling": bool, "affinity": bool}``: which were applied.
    """
    if not patches_enabled(enabled):
        LOG.info("Flower engine patches off (%s or engine_patches=False)", PATCHES_ENV)
        yield {"wakeups": False, "polling": False, "affinity": False}
        return
    with engine_wakeups() as wakeups, engine_polling(interval_s) as polling, actor_affinity() as (
        affinity
    ):
        yield {"wakeups": wakeups, "polling": polling, "affinity": affinity}


class Signal:
    """A counter of events that threads can wait on (no event is lost between check and wait).

    A waiter reads :meth:`count`, looks for work, and if it found none calls
    :meth:`wait_past` with the count it read: that returns as soon as the count moved.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    def count(self) -> int:
        with self._changed:
            return self._count

    def notify(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait_past(self, seen: int, timeout_s: float) -> bool:
        """Wait until the count differs from ``seen`` (at most ``timeout_s``); whether it did."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count != seen, timeout_s)


# Set while engine_wakeups() is on: stored messages (for the feeder), stored replies (for the
# ServerApp's reply loop).
_STORED: dict[str, Signal] = {}


def stored_signal(kind: str) -> Signal | None:
    """While :func:`engine_wakeups` is on in this process, the signal of stored messages
    (``kind="ins"``) or replies (``"res"``); else ``None``."""
    return _STORED.get(kind)


@contextmanager
def engine_wakeups() -> Iterator[bool]:
    """The in-memory link state signals stored messages and replies. Yields whether patched."""
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    originals = {
        kind: getattr(InMemoryLinkState, f"store_message_{kind}") for kind in ("ins", "res")
    }
    if _STORED or not all(
        patch_applies("wake-ups", f, ("self", "message")) for f in originals.values()
    ):
        yield False
        return

    def signalling(kind: str) -> Callable[[Any, Any], Any]:
        original, signal = originals[kind], _STORED.setdefault(kind, Signal())

        def store(self: Any, message: Any) -> Any:
            try:
                return original(self, message)
            finally:
                signal.notify()

        return store

    for kind in originals:
        setattr(InMemoryLinkState, f"store_message_{kind}", signalling(kind))
    try:
        yield True
    finally:
        for kind, original in originals.items():
            setattr(InMemoryLinkState, f"store_message_{kind}", original)
        _STORED.clear()


@contextmanager
def engine_polling(interval_s: float) -> Iterator[bool]:
    """The engine checks for new messages every ``interval_s`` seconds (Flower: 0.1 s), or as
    soon as one is stored while :func:`engine_wakeups` is on.

    Yields whether Flower's feeder was replaced.
    """
    from flwr.server.superlink.fleet.vce import vce_api

    original = vce_api.add_messages_to_queue
    if not patch_applies("polling", original, ("state", "queue", "nodes_mapping", "f_stop")):
        yield False
        return

    def feeder(state: Any, queue: Any, nodes_mapping: Mapping[int, int], f_stop: Any) -> None:
        while not f_stop.is_set():
            stored = stored_signal("ins")
            seen = stored.count() if stored is not None else 0
            found = False
            for node_id in nodes_mapping:
                for message in state.get_message_ins(node_id=node_id, limit=1):
                    queue.put(message)
                    found = True
            if found:
                continue  # a node may have more waiting (limit=1 per pass)
            if stored is None:
                f_stop.wait(interval_s)
            else:
                stored.wait_past(seen, WAKEUP_FALLBACK_S)

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


class AppLoader:
    """Flower's ClientApp loader, pickled once in the driver and unpickled once per process.

    Ray pickles every argument of every actor call; Flower passes its loader, a closure, which
    cloudpickle serializes *by value* each time, walking ``sys.modules`` for each of its globals:
    roughly 3-4 ms of the driver's CPU per message once torch, pandas and scikit-learn are
    imported (estimated from a py-spy profile, docs/performance.md), on the path of every round
    trip. This object pickles as a reference to its class plus the loader's bytes.
    """

    _loaded: ClassVar[dict[bytes, Callable[[], Any]]] = {}  # per process: digest -> loader

    def __init__(self, app_fn: Callable[[], Any]) -> None:
        from ray import cloudpickle

        self.blob = cloudpickle.dumps(app_fn)
        self.digest = hashlib.sha256(self.blob).digest()

    def __call__(self) -> Any:
        app_fn = self._loaded.get(self.digest)
        if app_fn is None:
            from ray import cloudpickle

            app_fn = self._loaded.setdefault(self.digest, cloudpickle.loads(self.blob))
        return app_fn()


@contextmanager
def actor_affinity() -> Iterator[bool]:
    """Each simulated node keeps its own Ray actor, and each call carries an :class:`AppLoader`
    instead of Flower's closure (see module doc). Yields whether patched."""
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    original = BasicActorPool.submit
    if not patch_applies("actor affinity", original, ("self", "actor_fn", "job")):
        yield False
        return

    def submit(self: Any, actor_fn: Any, job: tuple[Any, Any, str, Any]) -> Any:
        owners = self.__dict__.setdefault("_fedads_owners", {})
        actor = pick_actor(self.pool, owners, str(job[2]))
        app_fn, message, cid, context = job
        cached = self.__dict__.get("_fedads_loader")  # (Flower's loader, its AppLoader)
        if cached is None or cached[0] is not app_fn:
            cached = self.__dict__["_fedads_loader"] = (app_fn, AppLoader(app_fn))
        future = actor_fn(actor, cached[1], message, cid, context)
        self._future_to_actor[future] = actor  # how Flower puts the actor back in the pool
        return future

    BasicActorPool.submit = submit  # type: ignore[method-assign]
    try:
        yield True
    finally:
        BasicActorPool.submit = original  # type: ignore[method-assign]
