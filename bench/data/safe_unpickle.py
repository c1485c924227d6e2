"""A restricted unpickler for pickled numpy data (Prompt-DT's release): arrays, numpy scalars,
dtypes and plain containers, nothing else.

Unpickling runs whatever callables a pickle names, so a downloaded `.pkl` could run
`os.system`. Here every global a pickle asks for is looked up in `_ALLOWED` (the names numpy's
own reduce of numeric arrays, scalars and dtypes uses, under NumPy 1's `numpy.core.*` and NumPy
2's `numpy._core.*` names, for every pickle protocol) and mapped to a checking wrapper; anything
else is refused at the opcode that names it, before it is called. The real numpy callables are
never handed out: `numpy.ndarray` is a token only `_reconstruct` accepts, and `numpy.dtype`
makes numeric dtypes only.

BUILD (`__setstate__`) is checked too, because numpy's own setstate trusts its input: a dtype
state can flag float64 as holding Python objects, and numpy then mishandles arrays of it
(internal errors while loading or freeing them, NumPy 2.4). So BUILD is allowed only on a numpy
array or dtype, with the state numpy writes for a numeric one. That check needs the pure-Python
unpickler (`pickle._Unpickler`): the C one has no hook for BUILD. The copyreg extension opcodes
are refused as well: a process-wide cache lets them skip `find_class`.

Containers nested deeper than `MAX_DEPTH` are refused too: the unpickler builds them without
recursion, but any later repr, comparison or copy of them would overflow Python's stack.
"""

from __future__ import annotations

import math
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.errors import UserError

_ALLOWED_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex numbers
_ONLY = "only numpy arrays, dtypes and plain containers are allowed"
# Prompt-DT's files nest three deep (a list of dicts of arrays); Python recurses ~1000 deep.
MAX_DEPTH = 100
# What a damaged (not hostile) file raises from the unpickler or from numpy's setstate.
_CORRUPT = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    OverflowError,
    MemoryError,
    RecursionError,
)


class _Refused(Exception):
    """What a pickle asked for that is not allowed (the loader adds the file)."""


class _NdarrayToken:
    """Stands in for `numpy.ndarray`, which numpy's reduce names only as `_reconstruct`'s
    first argument; being no class, it cannot be called to make arrays in other ways."""


_NDARRAY = _NdarrayToken()


def _numeric(dtype: object) -> np.dtype:
    """`dtype` if it is a numeric numpy dtype without fields, else refused."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in _ALLOWED_KINDS or dtype.fields:
        raise _Refused(f"it uses the dtype {dtype!r}, which is not a numeric one")
    return dtype


def _dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
    if not isinstance(spec, str):  # a dict or list spec would make a structured dtype
        raise _Refused(f"it asks for a dtype from {type(spec).__name__} {spec!r}")
    # Always a copy: BUILD sets state on it, and must never reach numpy's shared instances.
    return _numeric(np.dtype(spec, align=bool(align), copy=True))


def _reconstruct(subtype: object, shape: object, typecode: object) -> np.ndarray:
    # numpy writes `_reconstruct(ndarray, (0,), b'b')` and fills the array in by BUILD.
    if subtype is not _NDARRAY or shape != (0,) or typecode != b"b":
        raise _Refused(f"it calls numpy's _reconstruct with {subtype!r}, {shape!r}, {typecode!r}")
    return np.ndarray((0,), dtype=np.int8)


def _scalar(dtype: object, data: object) -> np.generic:
    dtype = _numeric(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused(f"it makes a numpy {dtype} scalar from {type(data).__name__}")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    # Protocol 5's in-band form of a contiguous array: a bytearray (an out-of-band buffer
    # cannot occur: no `buffers` are passed, so the unpickler refuses NEXT_BUFFER).
    dtype = _numeric(dtype)
    if not isinstance(buffer, bytes | bytearray) or order not in ("C", "F"):
        raise _Refused(f"it calls numpy's _frombuffer with {type(buffer).__name__}, {order!r}")
    return np.frombuffer(buffer, dtype=dtype).reshape(_shape(shape), order=order)


def _latin1(text: object, encoding: object) -> bytes:
    # Protocols 0-2 have no bytes opcode: bytes are pickled as `_codecs.encode(str, 'latin1')`.
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused(f"it calls _codecs.encode with {type(text).__name__}, {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    if args:  # protocols 0-2 pickle only b"" as `bytes()`
        raise _Refused(f"it calls bytes with {len(args)} arguments")
    return b""


def _shape(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise _Refused(f"it gives an array the shape {shape!r}")
    return shape


# Every global numpy's reduce names for numeric arrays, scalars and dtypes, at protocols 0-5:
# NumPy 1 writes `numpy.core.*`, NumPy 2 `numpy._core.*` (found with pickletools).
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1,  # protocols 0-2
    ("__builtin__", "bytes"): _empty_bytes,
    # Plain containers that protocols 0-3 build by a call (`__builtin__` is 0-2's name).
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
}
_ALIASES = {"posix": "os", "nt": "os", "__builtin__": "builtins"}  # as users know the names


def _build_problem(inst: object, state: object) -> str | None:
    """Why setting `state` on `inst` is refused, or None for the state numpy writes."""
    if isinstance(inst, np.dtype):
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags)
        plain = (None, None, None, -1, -1, inst.flags)
        if isinstance(state, tuple) and len(state) == 8 and state[0] == 3:
            if state[1] in ("<", ">", "|", "=") and state[2:] == plain:
                return None
        return f"it sets the numpy dtype {inst} to the state {state!r}"
    if type(inst) is np.ndarray:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            _, shape, dtype, fortran, data = state
            dtype = _numeric(dtype)
            if isinstance(fortran, bool) and isinstance(data, bytes | bytearray):
                if len(data) == math.prod(_shape(shape)) * dtype.itemsize:
                    return None
        return "it sets a numpy array to a state that is not a numeric array's"
    return f"it sets the state of a {type(inst).__name__}"


class _NumpyOnlyUnpickler(pickle._Unpickler):
    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)  # per opcode: its loader
    stack: list[Any]  # the base class's, set by load(); typeshed leaves its internals out

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise _Refused(f"it asks for {_ALIASES.get(module, module)}.{name}")
        return allowed

    def load_build(self) -> None:
        problem = _build_problem(self.stack[-2], self.stack[-1])
        if problem:
            raise _Refused(problem)
        super().load_build()  # type: ignore[misc]  # typeshed leaves the opcode loaders out

    def load_extension(self) -> None:
        raise _Refused("it uses the copyreg extension registry")

    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.EXT1[0]] = dispatch[pickle.EXT2[0]] = dispatch[pickle.EXT4[0]] = load_extension


def _check_depth(loaded: object) -> None:
    """Refuse containers nested more than MAX_DEPTH deep, walking them without recursion."""
    stack, seen = [(loaded, 1)], set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children = list(item)
        else:
            continue
        if id(item) in seen:  # the memo can make a container hold itself
            continue
        seen.add(id(item))
        if depth > MAX_DEPTH:
            raise _Refused(f"it nests containers more than {MAX_DEPTH} deep")
        stack.extend((child, depth + 1) for child in children)


def load_numpy_pickle(path: Path) -> Any:
    """The object pickled in `path`, which may hold only numpy arrays, numpy scalars, numeric
    dtypes and plain containers (NumPy 1 or 2 pickles); a one-line UserError otherwise."""
    try:
        with open(path, "rb") as file:
            loaded = _NumpyOnlyUnpickler(file).load()
        _check_depth(loaded)
        return loaded
    except _Refused as refused:
        raise UserError(f"{path}: refused to unpickle: {refused} ({_ONLY})") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror})") from None
    except _CORRUPT as exc:
        reason = "it ends early" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())  # the message must stay one line
        raise UserError(f"{path} is not a readable pickle ({reason})") from None
