"""pipeline.toml validation: every problem reported with its section."""

from __future__ import annotations

import pytest

from agentsight.pipeline.config import ConfigError, loads

GOOD = """
[sources.gen]
type = "generator"
[analyzers.tag]
type = "annotate"
inputs = ["gen"]
workers = 2
partition_by = "data.key"
[sinks.out]
type = "jsonl"
inputs = ["tag"]
path = "/tmp/x.jsonl"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loads(text)
    return [str(p) for p in exc.value.problems]


def test_good_config_loads_with_order_upstream_first():
    spec = loads(GOOD)
    assert spec.order() == ["gen", "tag", "out"]
    assert spec.components["tag"].workers == 2


def test_unknown_type_and_option_name_their_section():
    bad = GOOD.replace('type = "annotate"', 'type = "annotat"').replace('path = "/tmp/x.jsonl"',
                                                                        'path = "/tmp/x.jsonl"\nbogus = 1')
    ps = problems(bad)
    assert any(p.startswith("[analyzers.tag] unknown analyzer type 'annotat'") for p in ps)
    assert any(p.startswith("[sinks.out] unknown option 'bogus'") for p in ps)


def test_option_types_are_checked():
    ps = problems(GOOD.replace('[sources.gen]\ntype = "generator"', '[sources.gen]\ntype = "generator"\ncount = "ten"'))
    assert ps == ["[sources.gen] option 'count' must be an integer, got str 'ten'"]


def test_unknown_input_and_cycle():
    ps = problems(GOOD.replace('inputs = ["tag"]', 'inputs = ["nope"]'))
    assert "[sinks.out] unknown input 'nope'" in ps
    cyc = GOOD + '\n[analyzers.b]\ntype = "passthrough"\ninputs = ["c"]\n[analyzers.c]\ntype = "passthrough"\ninputs = ["b"]\n'
    assert any("cycle: " in p and p.startswith("[analyzers.") for p in problems(cyc))


def test_endpoint_clash_between_two_sinks_writing_one_file():
    dup = GOOD + '\n[sinks.copy]\ntype = "jsonl"\ninputs = ["gen"]\npath = "/tmp/x.jsonl"\n'
    assert any(p.startswith("[sinks.copy] file:/tmp/x.jsonl is also used by [sinks.out]") for p in problems(dup))


def test_structure_rules():
    ps = problems(GOOD.replace('[sinks.out]\ntype = "jsonl"\ninputs = ["tag"]', '[sinks.out]\ntype = "jsonl"\ninputs = []')
                  .replace("workers = 2", "workers = 0"))
    assert "[sinks.out] needs at least one input (inputs = [\"...\"])" in ps
    assert any(p.startswith("[analyzers.tag] workers must be") for p in ps)
    assert problems("[bus]\nhwm = 'x'\n")[0] == "[bus] option 'hwm' must be int, got 'x'"
    assert any("not valid TOML" in p for p in problems("[sources.gen"))


def test_tcp_bus_requires_keys():
    ps = problems(GOOD + '\n[bus]\nlisten = "tcp://0.0.0.0:7396"\n')
    assert any(p.startswith("[bus] a TCP bus needs secret_key and authorized_keys") for p in ps)
