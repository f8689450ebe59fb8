"""Declare ROS parameters from ParamSpecs and refuse bad values with one clear line."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.node import Node

from vr_stream_ros.graph.param_spec import ParameterError, ParamSpec, Value

READ_AT_START = "read at start (read-only): restart the node to change it"


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """A ParameterDescriptor with the spec's description, range, step, choices, read-only.

    ``additional_constraints`` says in words everything the spec checks (what
    ``ros2 param describe`` shows), so the descriptor states the real constraints.
    """
    constraints = spec.allowed() + ("; " + READ_AT_START if spec.read_only else "")
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                            additional_constraints=constraints)
    if spec.kind is int and spec.min is not None and spec.max is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max),
                                        step=spec.step or 0)]
    if spec.kind is float:
        # Accept 30 as well as 30.0 from the command line; the spec coerces it.
        d.dynamic_typing = True
        if spec.min is not None and spec.max is not None:
            d.floating_point_range = [
                FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    if spec.kind is list or spec.any_type:
        d.dynamic_typing = True
    return d


def declare_and_validate(node: Node, specs: Iterable[ParamSpec]) -> dict[str, Value]:
    """Declare every spec on ``node`` and return the validated values.

    Raises ParameterError naming the first bad parameter and what it allows.
    """
    values: dict[str, Value] = {}
    for spec in specs:
        default = spec.default if spec.kind is not list else list(spec.default) or [-1]
        try:
            param = node.declare_parameter(spec.name, default, descriptor_for(spec))
            raw = param.value
        except InvalidParameterValueException as exc:
            found = re.search(r"Invalid parameter value \((.*?)\)", str(exc))
            raw = found.group(1) if found else "a value out of range"
            raise ParameterError(
                f"parameter '{spec.name}': got {raw}, expected {spec.allowed()}") from None
        except (InvalidParameterTypeException, ParameterUninitializedException) as exc:
            raise ParameterError(
                f"parameter '{spec.name}': {exc}; expected {spec.allowed()}") from None
        if spec.kind is list and raw == [-1]:
            raw = []
        values[spec.name] = spec.validate(raw)
    return values
