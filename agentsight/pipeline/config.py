"""pipeline.toml: the graph, checked whole before anything starts.

::

    name = "default"                 # names the runtime dir; two live pipelines may not share one

    [sources.NAME]   type = "...", publish = true|false|["prefix", ...], <options>
    [analyzers.NAME] type = "...", inputs = [...], workers = N, partition_by = "pid"|"data.FIELD", <options>
    [sinks.NAME]     type = "...", inputs = [...], <options>
    [bus]            enabled, listen, secret_key, authorized_keys, hwm
    [supervisor]     graceful_timeout, heartbeat_interval, ready_timeout, max_restarts,
                     restart_window, retry_after, runtime_dir, watch, exit_when_sources_done

Components know each other only by name. :func:`validate` returns every problem,
each with the section it is in; :func:`load` raises :class:`ConfigError` with all
of them. The spec objects are plain data and travel to actor processes as JSON.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentsight.pipeline.component import option_problems
from agentsight.pipeline.registry import UnknownType, component_class

__all__ = [
    "ComponentSpec", "BusSpec", "SupervisorSpec", "PipelineSpec", "Problem", "ConfigError",
    "load", "loads", "parse", "validate", "KINDS",
]

KINDS = ("source", "analyzer", "sink")
SECTION = {"source": "sources", "analyzer": "analyzers", "sink": "sinks"}
RESERVED = {"type", "inputs", "workers", "partition_by", "publish"}
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,47}$")
PARTITION_RE = re.compile(r"^(pid|tid|comm|data\.[A-Za-z0-9_]+)$")


@dataclass
class ComponentSpec:
    kind: str
    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    workers: int = 1
    partition_by: str = ""
    # False: publish nothing to the bus; True: every topic; a list: these topic prefixes.
    publish: bool | list[str] = False

    @property
    def section(self) -> str:
        return f"{SECTION[self.kind]}.{self.name}"

    def structure(self) -> tuple[Any, ...]:
        """What a running instance cannot change without a restart."""
        return (self.kind, self.type, self.workers, self.partition_by)


@dataclass
class BusSpec:
    enabled: bool = True
    listen: str = ""
    secret_key: str = ""
    authorized_keys: str = ""
    hwm: int = 1000


@dataclass
class SupervisorSpec:
    graceful_timeout: float = 10.0
    heartbeat_interval: float = 0.5
    ready_timeout: float = 30.0
    max_restarts: int = 5
    restart_window: float = 60.0
    retry_after: float = 30.0
    runtime_dir: str = ""
    watch: bool = True
    exit_when_sources_done: bool = True


@dataclass
class PipelineSpec:
    name: str = "default"
    components: dict[str, ComponentSpec] = field(default_factory=dict)
    bus: BusSpec = field(default_factory=BusSpec)
    supervisor: SupervisorSpec = field(default_factory=SupervisorSpec)

    def of_kind(self, kind: str) -> list[ComponentSpec]:
        return [c for c in self.components.values() if c.kind == kind]

    def downstream(self, name: str) -> list[ComponentSpec]:
        return [c for c in self.components.values() if name in c.inputs]

    def order(self) -> list[str]:
        """Component names upstream-first (sources, analyzers in dependency order, sinks)."""
        done: list[str] = []
        seen: set[str] = set()

        def visit(n: str, stack: tuple[str, ...] = ()) -> None:
            if n in seen or n in stack or n not in self.components:
                return
            for i in self.components[n].inputs:
                visit(i, stack + (n,))
            seen.add(n)
            done.append(n)

        for kind in KINDS:
            for c in self.of_kind(kind):
                visit(c.name)
        return done

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    section: str
    message: str

    def __str__(self) -> str:
        return f"[{self.section}] {self.message}" if self.section else self.message


class ConfigError(Exception):
    def __init__(self, problems: list[Problem], path: str = "") -> None:
        self.problems = problems
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(str(p) for p in problems))


def _section_spec(cls: type, data: dict[str, Any], section: str, problems: list[Problem]) -> Any:
    spec = cls()
    for key, value in data.items():
        if not hasattr(spec, key):
            known = ", ".join(sorted(asdict(spec)))
            problems.append(Problem(section, f"unknown option {key!r} (known options: {known})"))
            continue
        default = getattr(spec, key)
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            problems.append(Problem(section, f"option {key!r} must be {expected.__name__}, got {value!r}"))
            continue
        setattr(spec, key, value)
    return spec


def parse(doc: dict[str, Any]) -> tuple[PipelineSpec, list[Problem]]:
    """Build the spec from a TOML document; problems found on the way are returned, not raised."""
    problems: list[Problem] = []
    spec = PipelineSpec()
    for key in doc:
        if key not in ("name", "sources", "analyzers", "sinks", "bus", "supervisor"):
            problems.append(Problem(key, "unknown top-level section (known: name, sources, analyzers, sinks, bus, supervisor)"))
    name = doc.get("name", "default")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(Problem("name", f"pipeline name must be letters, digits, '-' or '_', got {name!r}"))
    else:
        spec.name = name
    spec.bus = _section_spec(BusSpec, doc.get("bus", {}), "bus", problems)
    spec.supervisor = _section_spec(SupervisorSpec, doc.get("supervisor", {}), "supervisor", problems)
    for kind in KINDS:
        table = doc.get(SECTION[kind], {})
        if not isinstance(table, dict):
            problems.append(Problem(SECTION[kind], "must be a table of named components"))
            continue
        for cname, body in table.items():
            section = f"{SECTION[kind]}.{cname}"
            if not isinstance(body, dict):
                problems.append(Problem(section, "must be a table"))
                continue
            if not NAME_RE.match(cname):
                problems.append(Problem(section, "component names are letters, digits, '-' or '_' (at most 48)"))
                continue
            if cname in spec.components:
                other = spec.components[cname].section
                problems.append(Problem(section, f"name {cname!r} is already used by [{other}]"))
                continue
            comp = ComponentSpec(kind=kind, name=cname, type=str(body.get("type", "")))
            comp.options = {k: v for k, v in body.items() if k not in RESERVED}
            inputs = body.get("inputs", [])
            if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
                problems.append(Problem(section, "inputs must be a list of component names"))
                inputs = []
            comp.inputs = list(inputs)
            workers = body.get("workers", 1)
            if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
                problems.append(Problem(section, f"workers must be an integer from 1 to 64, got {workers!r}"))
                workers = 1
            comp.workers = workers
            comp.partition_by = str(body.get("partition_by", ""))
            publish = body.get("publish", kind != "sink" and spec.bus.enabled)
            if not (isinstance(publish, bool) or (isinstance(publish, list) and all(isinstance(p, str) for p in publish))):
                problems.append(Problem(section, "publish must be true, false or a list of topic prefixes"))
                publish = False
            comp.publish = publish
            spec.components[cname] = comp
    return spec, problems


def validate(spec: PipelineSpec) -> list[Problem]:
    """Every problem with the graph: types, options, inputs, cycles, endpoint clashes."""
    from agentsight.pipeline import check

    if check.isolated():  # a long-lived process: the component modules are imported in a child
        try:
            return [Problem(s, m) for s, m in check.facts_in_child(spec)["problems"]]
        except check.CheckFailed as exc:
            return [Problem("", str(exc))]
    problems: list[Problem] = []
    claims: dict[str, str] = {}

    def claim(endpoint: str, section: str) -> None:
        if endpoint in claims:
            problems.append(Problem(section, f"{endpoint} is also used by [{claims[endpoint]}]"))
        else:
            claims[endpoint] = section

    if spec.bus.listen:
        if not spec.bus.enabled:
            problems.append(Problem("bus", "listen is set but the bus is disabled"))
        if not spec.bus.listen.startswith("tcp://"):
            problems.append(Problem("bus", f"listen must be a tcp:// endpoint, got {spec.bus.listen!r}"))
        elif not spec.bus.secret_key or not spec.bus.authorized_keys:
            problems.append(Problem("bus", "a TCP bus needs secret_key and authorized_keys (make them with `agentsight keys`)"))
        claim(_normal_endpoint(spec.bus.listen), "bus")
    for path_opt in ("secret_key", "authorized_keys"):
        value = getattr(spec.bus, path_opt)
        if value and not Path(value).exists():
            problems.append(Problem("bus", f"{path_opt} {value!r} does not exist"))
    if not spec.components:
        problems.append(Problem("", "the pipeline has no components"))
    if not spec.of_kind("source"):
        problems.append(Problem("sources", "the pipeline needs at least one source"))

    for comp in spec.components.values():
        s = comp.section
        if not comp.type:
            problems.append(Problem(s, "missing 'type'"))
            continue
        try:
            cls = component_class(comp.kind, comp.type)
        except UnknownType as exc:
            problems.append(Problem(s, str(exc)))
            continue
        except ImportError as exc:
            problems.append(Problem(s, f"cannot load type {comp.type!r}: {exc}"))
            continue
        problems.extend(Problem(s, p) for p in option_problems(cls.OPTIONS, comp.options))
        if cls.CAPS.check_options:
            problems.extend(Problem(s, p) for p in cls.check_options(comp.options))
        if cls.CAPS.claims:
            for endpoint in cls.claims(comp.options):
                claim(endpoint, s)
        if comp.kind == "source":
            if comp.inputs:
                problems.append(Problem(s, "sources take no inputs"))
        else:
            if not comp.inputs:
                problems.append(Problem(s, "needs at least one input (inputs = [\"...\"])"))
            for i in comp.inputs:
                target = spec.components.get(i)
                if target is None:
                    problems.append(Problem(s, f"unknown input {i!r}"))
                elif target.kind == "sink":
                    problems.append(Problem(s, f"input {i!r} is a sink; sinks produce nothing"))
                elif i == comp.name:
                    problems.append(Problem(s, "a component cannot be its own input"))
            if len(set(comp.inputs)) != len(comp.inputs):
                problems.append(Problem(s, "an input is listed twice"))
        if comp.kind != "analyzer" and comp.workers != 1:
            problems.append(Problem(s, "only analyzers take workers"))
        if comp.partition_by and not PARTITION_RE.match(comp.partition_by):
            problems.append(Problem(s, f"partition_by must be pid, tid, comm or data.FIELD, got {comp.partition_by!r}"))
        if comp.kind == "sink" and comp.publish:
            problems.append(Problem(s, "sinks do not publish to the bus"))
        if comp.publish and not spec.bus.enabled:
            problems.append(Problem(s, "publish is set but [bus] is disabled"))

    for cycle in _cycles(spec):
        problems.append(Problem(spec.components[cycle[0]].section, "cycle: " + " -> ".join(cycle + [cycle[0]])))
    return problems


def _normal_endpoint(ep: str) -> str:
    return ep.replace("0.0.0.0", "*").replace("localhost", "127.0.0.1")


def _cycles(spec: PipelineSpec) -> list[list[str]]:
    found: list[list[str]] = []
    color: dict[str, int] = {}

    def dfs(n: str, path: list[str]) -> None:
        color[n] = 1
        for i in spec.components[n].inputs:
            if i not in spec.components:
                continue
            if color.get(i) == 1:
                cyc = path[path.index(i):] if i in path else [i]
                found.append(list(reversed(cyc)))
            elif color.get(i) is None:
                dfs(i, path + [i])
        color[n] = 2

    for n in spec.components:
        if color.get(n) is None:
            dfs(n, [n])
    return found


def loads(text: str, path: str = "") -> PipelineSpec:
    """Parse and validate TOML text; raises ConfigError with every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("", f"not valid TOML: {exc}")], path) from None
    spec, problems = parse(doc)
    problems += validate(spec)
    if problems:
        raise ConfigError(problems, path)
    return spec


def load(path: str | Path) -> PipelineSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read config: {exc.strerror}")], str(p)) from None
    return loads(text, str(p))


def spec_from_dict(d: dict[str, Any]) -> PipelineSpec:
    """Rebuild a spec sent as JSON (supervisor -> actor)."""
    return PipelineSpec(
        name=d["name"],
        components={k: ComponentSpec(**v) for k, v in d["components"].items()},
        bus=BusSpec(**d["bus"]),
        supervisor=SupervisorSpec(**d["supervisor"]),
    )
