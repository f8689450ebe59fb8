"""Every node parameter and launch argument, given wrong types and out-of-range values:
one line naming it. The cases are generated from the specs (graph/node_params.py,
graph/launches.py), so a new parameter is covered the day it is added; a random run of
FUZZ_N values (``make fuzz``: 100k) checks the validators take anything; a sample goes
through real node processes."""

from __future__ import annotations

import random

import pytest
from conftest import needs_ros
from fuzz_inputs import drive, fuzz_n

from vr_stream_ros.graph.launches import LAUNCH_ARGUMENTS, NODES, node_launches
from vr_stream_ros.graph.param_spec import ParameterError, ParamSpec, check_cpu_list

N = fuzz_n(100_000)
ODD_TEXT = ["", "abc", "1.5", "-5", "nan", "inf", "1e3", "true", "[1,2]", "\0", "a b",
            "300.1.1.1", "0-99999999999", "3-1", "1,,2", "x" * 300, "9" * 5000, "\u00e9",
            "http://host/cal.yaml", "file://relative.yaml", "package://no_path"]


def bad_values(spec: ParamSpec) -> list[object]:
    """Values ``spec`` must refuse: other types, just outside its range or step, not a
    choice, and the odd strings its check refuses."""
    kind = spec.kind
    if kind is bool:
        values: list[object] = ["yes", "1", 2, 1.5, [True], None, ""]
    elif kind is int:
        values = ["abc", 1.5, True, "1.5", [1], None, float("nan"), float("inf"), "9" * 5000]
    elif kind is float:
        values = ["abc", True, "nan", "inf", float("nan"), float("-inf"), [1.0], None]
    else:
        values = []
    if kind in (int, float):
        if spec.min is not None:
            values.append(kind(spec.min) - 1)
        if spec.max is not None:
            values.append(kind(spec.max) * 2 + 1)
        if spec.step is not None:
            values.append(int(spec.min) + 1)
    if spec.choices:
        values += ["not-" + spec.choices[0], spec.choices[0].upper() + "x", ""]
    elif kind is str and spec.check is not None:
        values += [t for t in ODD_TEXT if spec.check(t) is not None]
    return values


SPECS = sorted({(node, s) for node, specs in NODES for s in specs}
               | {("launch", a.spec) for a in LAUNCH_ARGUMENTS if not a.node},
               key=lambda ns: (ns[0], ns[1].name))
CASES = [(node, spec, value) for node, spec in SPECS for value in bad_values(spec)]


def _one_line_naming(exc: ParameterError, name: str) -> None:
    text = str(exc)
    assert text.startswith(f"parameter '{name}': got "), text
    assert "\n" not in text and len(text) < 400, text
    assert "expected" in text


def test_every_parameter_has_bad_values_to_try() -> None:
    """Every spec that can be wrong gets cases (only free strings like paths have none)."""
    free = [s for _, s in SPECS if not bad_values(s)]
    assert all(s.kind is str and not s.choices and s.check is None for s in free), free
    assert len(CASES) > 300


def test_each_bad_value_is_refused_in_one_line_naming_the_parameter() -> None:
    for _node, spec, value in CASES:
        with pytest.raises(ParameterError) as err:
            spec.validate(value)
        _one_line_naming(err.value, spec.name)


@pytest.mark.parametrize("argument", LAUNCH_ARGUMENTS, ids=lambda a: a.name)
def test_each_bad_launch_argument_is_refused_before_anything_starts(argument) -> None:
    texts = {str(v) for v in bad_values(argument.spec)
             if v is not None and not isinstance(v, list)} - {""}  # '' = config default
    for text in sorted(texts):
        with pytest.raises(ParameterError) as err:
            node_launches({"yolo": "true" if argument.node == "detector_node" else "false",
                           argument.name: text})
        msg = str(err.value)
        # width/height outside what RTP/JPEG carries are refused the same way, by name.
        assert msg.startswith(f"parameter '{argument.spec.name}': got "), (text, msg)
        assert "\n" not in msg and len(msg) < 400, msg


def test_regressions_nan_huge_cpu_ranges_and_long_values() -> None:
    """nan passed every range check (nan < min is False); '0-99999999999' as a CPU list
    built a list of 10^11 CPUs; a 1 MB value was quoted whole in the error line."""
    fps = next(s for _, s in SPECS if s.name == "fps")
    for value in ("nan", float("nan"), "inf"):
        with pytest.raises(ParameterError, match="'fps'"):
            fps.validate(value)
    assert check_cpu_list("0-99999999999") is not None and check_cpu_list("3-1") is not None
    assert check_cpu_list("0-3") is None
    ring = next(s for _, s in SPECS if s.name == "ring_name")
    with pytest.raises(ParameterError) as err:
        ring.validate("/" * 1_000_000)
    assert len(str(err.value)) < 400


def test_random_values_are_accepted_in_range_or_refused_by_name() -> None:
    rng = random.Random(23)
    specs = [s for _, s in SPECS]
    numbers = [0, 1, -1, 2, 15, 16, 100, 1400, 65535, 65536, 2**31, 2**63, -2**63, 10**30]
    refused = accepted = 0

    def value() -> object:
        kind = rng.randrange(6)
        if kind == 0:
            return rng.choice(numbers) + rng.choice([0, 0, 1, -1])
        if kind == 1:
            return rng.choice([0.0, 0.5, -0.5, 1e-9, 1e308, float("nan"), float("inf")]) + \
                rng.choice(numbers)
        if kind == 2:
            return rng.choice([True, False, None, [], [1, "a"], {"a": 1}])
        if kind == 3:
            spec = rng.choice(specs)
            return rng.choice(spec.choices) if spec.choices else str(spec.default)
        if kind == 4:
            return str(rng.choice(numbers) + rng.random())
        return rng.choice(ODD_TEXT)

    def handle(item: tuple[ParamSpec, object]) -> None:
        nonlocal refused, accepted
        spec, v = item
        try:
            got = spec.validate(v)
        except ParameterError as exc:
            _one_line_naming(exc, spec.name)
            refused += 1
            return
        accepted += 1
        assert type(got) is spec.kind, (spec.name, v, got)
        if spec.min is not None:
            assert got >= spec.min, (spec.name, v)
        if spec.max is not None:
            assert got <= spec.max, (spec.name, v)
        assert not spec.choices or got in spec.choices

    def item() -> tuple[ParamSpec, object]:
        spec, v = rng.choice(specs), value()
        if "IPv4" in spec.expects and any(c.isalpha() for c in str(v)):
            v = "".join(c for c in str(v) if not c.isalpha())  # a host name waits for DNS
            # (up to the resolver's 5 s timeout here): once per start, not per input
        return spec, v

    run = drive(handle, (item() for _ in range(N)))
    assert refused and accepted
    print(f"parameters: {run.inputs} values in {run.seconds:.1f} s, {refused} refused, "
          f"{accepted} accepted, slowest {run.slowest_s * 1e3:.1f} ms")


SAMPLE = random.Random(24)
NODE_SAMPLE = [(node, spec, SAMPLE.choice([v for v in bad_values(spec) if v is not None
                                            and not isinstance(v, list) and str(v)]))
               for node in ("camera_node", "headset_bridge_node")
               for spec in [SAMPLE.choice([s for n, s in SPECS if n == node and any(
                   v is not None and not isinstance(v, list) and str(v)
                   for v in bad_values(s))])]]


@needs_ros
@pytest.mark.parametrize(("node", "spec", "value"), NODE_SAMPLE,
                         ids=[f"{n}-{s.name}" for n, s, _ in NODE_SAMPLE])
def test_a_real_node_refuses_a_generated_bad_value_in_one_line(procs, node, spec,
                                                               value) -> None:
    text = {True: "true", False: "false"}.get(value, str(value)) if isinstance(value, bool) \
        else str(value)
    proc = procs.node(node, f"{spec.name}:={text}")
    code = proc.wait(timeout=60)
    out = procs.output(node)
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert code == 2 and len(fatal) == 1, out
    assert f"'{spec.name}'" in fatal[0] and "Traceback" not in out, out
