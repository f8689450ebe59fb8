"""Declarative parameter specifications, checked the same way everywhere.

A node declares its ROS parameters from these specs (description, range, step, choices,
read-only), the launch file and ``make run`` take their defaults from them, docs/reference.md
is generated from them, and a bad value is refused with one line naming the parameter and
what is allowed. No rclpy here.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Value = bool | int | float | str | list


class ParameterError(ValueError):
    """A parameter value outside what its spec allows."""


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name, default, description and what values are allowed."""

    name: str
    default: Value
    description: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    step: int | None = None
    """Integers only: allowed values are min, min + step, ... (ROS IntegerRange.step)."""
    check: Callable[[Any], str | None] | None = None
    """Extra check: returns what was expected when the value is wrong, else None."""
    expects: str = ""
    """What ``check`` accepts, in words (for docs and descriptors; '' = the type only)."""
    any_type: bool = False
    """Accept any ROS type on the command line (e.g. cpu_affinity:=2 as well as '2,3')."""
    read_only: bool = True
    """Read once at start: changing it means restarting the node (ros2 param set refuses)."""

    def __post_init__(self) -> None:
        if self.step is not None and not (
                self.kind is int and self.min is not None and self.max is not None
                and self.step > 0 and (self.max - self.min) % self.step == 0):
            raise ValueError(f"ParamSpec '{self.name}': step needs an int range whose max is "
                             "min + a whole number of steps")

    @property
    def kind(self) -> type:
        """The Python type of the parameter (bool, int, float, str or list)."""
        return type(self.default)

    def allowed(self) -> str:
        """Human description of the allowed values, for errors and docs."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.expects:
            return self.expects
        kind = {bool: "true or false", int: "an integer", float: "a number",
                str: "a string", list: "a list"}[self.kind]
        if self.step is not None and self.min is not None and self.max is not None:
            span = f"{_fmt(self.min)}..{_fmt(self.max)}"
            if self.min % self.step == 0:
                return f"a multiple of {self.step} in {span}"
            return f"{kind} in {span} in steps of {self.step} from {_fmt(self.min)}"
        if self.min is not None and self.max is not None:
            return f"{kind} in {_fmt(self.min)}..{_fmt(self.max)}"
        if self.min is not None:
            return f"{kind} >= {_fmt(self.min)}"
        return kind

    def validate(self, value: Any) -> Value:
        """Return ``value`` coerced to this spec's type, or raise ParameterError."""
        value = _coerce(self, value)
        wrong = None
        too_low = self.min is not None and value < self.min
        too_high = self.max is not None and value > self.max
        off_step = self.step is not None and (value - self.min) % self.step != 0
        if (self.choices and value not in self.choices) or too_low or too_high or off_step:
            wrong = self.allowed()
        elif self.check is not None:
            wrong = self.check(value)
        if wrong:
            raise ParameterError(f"parameter '{self.name}': got {_shown(value)}, "
                                 f"expected {wrong}")
        return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _coerce(spec: ParamSpec, value: Any) -> Value:
    kind = spec.kind
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind is float:
            if isinstance(value, bool) or not math.isfinite(number := float(value)):
                raise TypeError  # nan passes every range check; inf is no setting
            return number
        if kind is list:
            if isinstance(value, str):
                text = value.strip().strip("[]")
                return [int(v) for v in text.split(",") if v.strip()]
            return list(value)
        return str(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"parameter '{spec.name}': got {_shown(value)}, expected {spec.allowed()}"
        ) from None


def _shown(value: Any) -> str:
    """The value as quoted in an error: its repr, cut to 80 characters (one short line)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_all(specs: Iterable[ParamSpec], values: Mapping[str, Any]) -> dict[str, Value]:
    """Validate every spec's value (its default when absent); unknown names are errors."""
    specs = list(specs)
    known = {s.name for s in specs}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(
            f"parameter '{unknown[0]}' is not known; known: {', '.join(sorted(known))}")
    return {s.name: s.validate(values.get(s.name, s.default)) for s in specs}


IPV4_HOST = "an IPv4 address (e.g. 192.168.1.100) or a resolvable host name"
"""What an IPv4 host parameter expects."""
NAME = "1-200 characters from [A-Za-z0-9_.-]"
CPU_LIST = "a CPU list like '2', '2,3' or '0-1' ('' = any CPU)"
MAX_CPUS = 1024  # CPU_SETSIZE of glibc's sched_setaffinity


def resolve_ipv4_host(value: object) -> str | None:
    """The address of an IPv4 literal or of a host name that resolves; None otherwise."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        pass
    if any(c.isalpha() for c in value):  # '300.1.1.1' and '1.2.3' are not host names
        try:
            return socket.getaddrinfo(value, None, socket.AF_INET)[0][4][0]
        except (OSError, UnicodeError):
            pass
    return None


def check_ipv4_host(value: str) -> str | None:
    """Spec check: an IPv4 literal or a host name that resolves."""
    return None if resolve_ipv4_host(value) is not None else IPV4_HOST


def check_name(value: str) -> str | None:
    """Spec check: a shared-memory-safe name."""
    if value and len(value) <= 200 and all(c.isalnum() or c in "_.-" for c in value):
        return None
    return NAME


def parse_cpu_list(value: str) -> tuple[int, ...]:
    """'2', '2,3' or '0-1' -> (2,), (2, 3), (0, 1); '' -> ()."""
    cpus: list[int] = []
    for part in str(value).replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if not 0 <= first <= last < MAX_CPUS:  # '0-99999999999' would fill the memory
            raise ValueError(f"CPU range {part!r}")
        cpus += range(first, last + 1)
    return tuple(cpus)


def check_cpu_list(value: str) -> str | None:
    """Spec check: a CPU list like '2', '2,3' or '0-1' ('' = any CPU)."""
    try:
        parse_cpu_list(value)
        return None
    except ValueError:
        return CPU_LIST
