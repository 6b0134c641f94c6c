"""What a Python process (a Pyodide engine worker, or CPython in tests) still holds in memory.

:func:`heap_census` lists every live buffer object (``bytes``, ``bytearray``, ``memoryview``,
numpy arrays) of at least ``min_bytes``, by type, length, shape and dtype -- never their contents,
so the census itself can be shown to anyone. It is how the tests check that the engine keeps no
per-image state after a batch (an image's file bytes or decoded pixels would show up here with the
image's length or shape) and how ``bench/memory.py`` follows the live heap over a long batch
(docs/robustness.md, "Memory").

Buffers are found the way :mod:`gc` can see them: from every object the collector tracks
(containers, instances, frames, closures, modules' dicts), through what each refers to, into the
untracked containers in between (a dict or tuple holding only bytes and numbers is not tracked).
What only C code holds (a C extension's private buffer, the wasm heap's free space) is not seen.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter

BUFFER_TYPES = (bytes, bytearray, memoryview)


def _describe(obj) -> tuple | None:
    """(type name, bytes, shape, dtype, owns its memory) for a buffer object, else None."""
    if isinstance(obj, BUFFER_TYPES):
        size = obj.nbytes if isinstance(obj, memoryview) else len(obj)
        shape = tuple(obj.shape) if isinstance(obj, memoryview) else (len(obj),)
        return type(obj).__name__, size, shape, "uint8" if not isinstance(obj, memoryview) else obj.format, \
            not isinstance(obj, memoryview)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray):
        # a view shares its base's memory: counted once, through the array that owns it
        return "ndarray", int(obj.nbytes), tuple(int(d) for d in obj.shape), str(obj.dtype), bool(obj.flags.owndata)
    return None


def live_buffers(min_bytes: int = 1024, roots: list | None = None) -> list[dict]:
    """Every live buffer of at least ``min_bytes``: ``{"type", "bytes", "shape", "dtype",
    "owns_data"}``, largest first. Collects garbage first, so only reachable objects count.
    With ``roots``, only what is reachable from those objects (e.g. one service and the modules
    it uses, in a test process that holds other tests' data too)."""
    gc.collect()
    roots = gc.get_objects() if roots is None else list(roots)
    seen = {id(obj) for obj in roots}
    seen.add(id(roots))
    stack = list(roots)
    found = []
    numpy = sys.modules.get("numpy")
    while stack:
        obj = stack.pop()
        described = _describe(obj)
        if described is not None and described[1] >= min_bytes:
            found.append(described)
        referents = gc.get_referents(obj)
        if numpy is not None and isinstance(obj, numpy.ndarray) and obj.base is not None:
            referents.append(obj.base)  # ndarray does not report its base to the collector
        for referent in referents:
            # tracked objects are roots already; untracked ones (a tuple or dict holding only
            # bytes, str and numbers, which the collector stops tracking) are walked into here
            if id(referent) not in seen:
                seen.add(id(referent))
                stack.append(referent)
    del roots, stack
    found.sort(key=lambda d: -d[1])
    return [{"type": t, "bytes": n, "shape": list(shape), "dtype": dtype, "owns_data": owns}
            for t, n, shape, dtype, owns in found]


def heap_census(min_bytes: int = 1024, holders_of: int | None = None) -> dict:
    """A summary of the live heap: the buffers of :func:`live_buffers`, their total (owned memory
    only, views excluded), the number of objects the collector tracks, pymalloc's allocated
    blocks, and the buffers grouped by (type, shape, dtype) with a count. With ``holders_of``
    (a byte length): also ``holders``, what keeps bytes of that length alive (:func:`holders`)."""
    buffers = live_buffers(min_bytes)
    groups = Counter((b["type"], tuple(b["shape"]), b["dtype"]) for b in buffers)
    return {
        "buffers": buffers,
        "buffer_bytes": sum(b["bytes"] for b in buffers if b["owns_data"]),
        "groups": [{"type": t, "shape": list(s), "dtype": d, "count": c} for (t, s, d), c in sorted(groups.items())],
        "gc_objects": len(gc.get_objects()),
        "allocated_blocks": sys.getallocatedblocks(),
        "min_bytes": min_bytes,
        **({"holders": holders(holders_of)} if holders_of is not None else {}),
    }


def _label(holder, held) -> str:
    """A short description of ``holder`` and of how it refers to ``held`` (names, never values)."""
    import types

    kind = type(holder).__name__
    if isinstance(holder, dict):
        keys = [repr(k)[:60] for k, v in holder.items() if v is held]
        return f"dict[{', '.join(keys)}]" if keys else "dict (as a key)"
    if isinstance(holder, types.FrameType):
        return f"frame of {holder.f_code.co_name} ({holder.f_code.co_filename}:{holder.f_lineno})"
    if isinstance(holder, types.FunctionType):
        return f"function {holder.__qualname__}"
    if isinstance(holder, types.ModuleType):
        return f"module {holder.__name__}"
    if isinstance(holder, (types.CoroutineType, types.GeneratorType)):
        return f"{kind} {holder.__qualname__}"
    if isinstance(holder, BaseException):
        return f"exception {kind}"
    return kind


def holders(nbytes: int, *, depth: int = 400, limit: int = 3) -> list[list[str]]:
    """For each live ``bytes``/``bytearray`` of exactly ``nbytes`` (up to ``limit``): a chain of
    objects that keep it alive, nearest first, as labels (:func:`_label`), up to ``depth`` links
    or a module. For finding what leaks, not for routine use (it maps every reference)."""
    import types

    gc.collect()
    parents: dict[int, list] = {}
    targets = []
    roots = gc.get_objects()
    seen = {id(obj) for obj in roots}
    stack = list(roots)
    del roots
    while stack:
        obj = stack.pop()
        if isinstance(obj, (bytes, bytearray)) and len(obj) == nbytes and len(targets) < limit:
            targets.append(obj)
        for referent in gc.get_referents(obj):
            parents.setdefault(id(referent), []).append(obj)
            if id(referent) not in seen:
                seen.add(id(referent))
                stack.append(referent)
    chains = []
    for target in targets:
        chain, held, visited = [], target, {id(target)}
        for _ in range(depth):
            candidates = [p for p in parents.get(id(held), ()) if id(p) not in visited]
            if not candidates:
                break
            holder = next((p for p in candidates if isinstance(p, types.ModuleType)), candidates[0])
            chain.append(_label(holder, held))
            if isinstance(holder, types.ModuleType):
                break
            visited.add(id(holder))
            held = holder
        chains.append(chain)
    return chains
