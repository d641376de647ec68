"""Make rules from a table of runs (``configs/runs.yaml``) and a profile (``configs/full.yaml``,
``configs/quick.yaml``): every notebook run is declared once, as data, and the Makefile includes
what this module writes.

Why generated make rules rather than a workflow engine: make already gives everything the study
relies on (parallel runs with ``-j``, a run redone when its notebook, a library file or an upstream
report is newer, resuming after an interruption, ``make -n`` to see the plan), and the project's
lock and cleanup wrap it; the only thing make did badly was declaring the runs, which this module
takes over. Adopting an engine would mean a new dependency and re-creating the parameter stamps,
the lock and the resume semantics on top of it.

The table (``runs:``, a list of rows; each row one run, or one per combination of ``for_each``)::

    name: train-{model.name}-seed{seed}   # the run; its report is REPORTS/NAME.html
    notebook: train                       # notebooks/train.ipynb; or module: + args: (a command)
    for_each: {model: [...], seed: seeds} # variable -> a list or an expression over the settings
    params: {seed: "{seed}", ...}         # -p NAME VALUE, in order; then the profile's args
    args: prune                           #   group named here; then params_after
    params_after: {obs: "{...}"}
    upstream: ["train-{model}-seed*"]     # runs it reads (a name may hold * ? [...]), or
                                          #   {for_each: ..., item: NAME}; listed first, started first
    needs_file: PATH or [PATH, ...]       # one missing: the run is left out of its downstream
                                          # runs, with one line naming the missing files
    outputs: [PATH, ...]                  # what it writes (for ``--list``; no effect on rules)
    figures:                              # the figures it draws, for the report (no effect on
      fig1_name: {title: ..., caption: ..., short: ..., seeds: ...}   #   rules; see figures())

``{EXPR}`` in a string is a small Python expression (names, ``a.field``, ``a[i]``, ``a[i:j]``,
literals, ``and``/``or``/``not``, comparisons, ``in``) over the row's ``for_each`` variables, the
profile's settings and the folders (``reports``, ``results``, ``figures`` and any ``--folder``):
absolute paths in notebook parameters (a notebook runs in its own folder), as given elsewhere. A
string that is one expression keeps its value's type; lists are written ``"[a, b]"`` (strings
``"[a,b]"``, as the Makefile's stamps always had them), booleans ``true``/``false``. A value
``{for_each: {...}, item: TEMPLATE}`` is the list of ``item`` over the combinations.

The profile: ``settings`` (name -> value; a string ``{EXPR}`` is computed from the other settings),
``protocols`` (name -> parameters) and ``args`` (group -> parameters: a mapping, or a list of
mappings and names of protocols or other groups). Each setting NAME can be overridden by
``--set NAME=VALUE`` or, with ``--env``, by the environment variable of its name in upper case
(``STEPS=100``; lists as ``SEEDS="0 1"``; booleans 1/0/true/false), and each group by GROUP_ARGS
(``PRUNE_ARGS="-p hessian_examples 100"``), which replaces it: make exports the variables of its
command line, so ``make reproduce STEPS=100`` keeps working.

Generated rules use the make variables ``RUN`` (the runner), ``PY``, ``LIB_DEPS`` and ``STAMP``.
Each run depends on its notebook, ``$(LIB_DEPS)``, its upstream reports and its parameter stamp
``REPORTS/.params/NAME.args`` (the runner arguments; with ``--write-stamps`` rewritten only when
they changed), so changing a setting reruns exactly the runs whose arguments differ.

``python -m obd.pipeline.rules --profile configs/quick.yaml --reports quick/reports
--results quick/results --figures quick/figures`` prints the rules; ``--list`` the runs.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import itertools
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from obd.pipeline import io

ROW_KEYS = (
    "name",
    "notebook",
    "module",
    "for_each",
    "params",
    "args",
    "params_after",
    "upstream",
    "needs_file",
    "outputs",
    "figures",
)
#: What a row's ``figures`` entry (figure file stem -> fields) holds: required, then optional.
FIGURE_KEYS = ("title", "caption")
FIGURE_OPTIONAL = ("short", "seeds")
PROFILE_KEYS = ("settings", "protocols", "args")
FOLDERS = ("reports", "results", "figures")
_EXPR = re.compile(r"\{([^{}]*)\}")
_GLOB = re.compile(r"[*?\[]")


@dataclass
class Run:
    """One run: ``kind`` is ``"notebook"`` (``target`` is its path) or ``"module"``."""

    name: str
    kind: str
    target: str
    args: str
    upstream: list[str] = field(default_factory=list)
    needs_file: str | list[str] | None = None
    outputs: list[str] = field(default_factory=list)


# --- expressions ---------------------------------------------------------------------------------

_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def evaluate(expr: str, scope: Mapping[str, Any], where: str) -> Any:
    """The value of the expression ``expr`` over ``scope``; ``where`` names it in errors.

    Accepted: names, ``a.field`` (of a mapping), ``a[i]``, ``a[i:j]``, literals, lists,
    ``and``/``or``/``not`` and comparisons (``==``, ``!=``, ``<``, ``in``, ...)."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"{where}: {{{expr}}} is not an expression ({e.msg})") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in scope:
                raise ValueError(
                    f"{where}: {{{expr}}} names {node.id!r}, which is not defined; "
                    f"defined here: {', '.join(sorted(scope))}"
                )
            return scope[node.id]
        if isinstance(node, ast.Attribute):
            value = ev(node.value)
            if not isinstance(value, Mapping) or node.attr not in value:
                fields = ", ".join(value) if isinstance(value, Mapping) else "none (not a mapping)"
                raise ValueError(
                    f"{where}: {{{expr}}} asks for field {node.attr!r}; its fields: {fields}"
                )
            return value[node.attr]
        if isinstance(node, ast.Subscript):
            value, index = ev(node.value), node.slice
            try:
                if isinstance(index, ast.Slice):
                    bounds = [ev(b) if b is not None else None for b in (index.lower, index.upper)]
                    return value[bounds[0] : bounds[1]]
                return value[ev(index)]
            except (TypeError, IndexError, KeyError) as e:
                raise ValueError(f"{where}: {{{expr}}} fails: {e}") from None
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BoolOp):
            result = None
            for value in node.values:
                result = ev(value)
                if isinstance(node.op, ast.And) != bool(result):
                    return result
            return result
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = ev(comparator)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(
            f"{where}: {{{expr}}} uses {type(node).__name__}; accepted: names, a.field, a[i], "
            "a[i:j], literals, lists, and/or/not, comparisons"
        )

    return ev(tree.body)


def expand(template: Any, scope: Mapping[str, Any], where: str) -> Any:
    """``template`` with every ``{EXPR}`` replaced; a string that is one ``{EXPR}`` gives the
    expression's value itself, any other the text with each value written in."""
    if isinstance(template, Mapping):
        if set(template) != {"for_each", "item"}:
            raise ValueError(
                f"{where}: a mapping value must have exactly the keys for_each and item "
                f"(a list built over for_each); got {', '.join(map(str, template))}"
            )
        return [
            expand(template["item"], {**scope, **combo}, where)
            for combo in combinations(template["for_each"], scope, where)
        ]
    if isinstance(template, list):
        return [expand(t, scope, where) for t in template]
    if not isinstance(template, str):
        return template
    whole = _EXPR.fullmatch(template)
    if whole:
        return evaluate(whole.group(1), scope, where)
    return _EXPR.sub(lambda m: scalar(evaluate(m.group(1), scope, where), where), template)


def combinations(for_each: Any, scope: Mapping[str, Any], where: str) -> Iterator[dict[str, Any]]:
    """Every combination of ``for_each`` (variable -> list, or an expression giving one), the
    first variable varying slowest."""
    if not isinstance(for_each, Mapping) or not for_each:
        raise ValueError(f"{where}: for_each must map variables to lists, got {for_each!r}")
    names, values = list(for_each), []
    for name in names:
        if name in scope:
            raise ValueError(f"{where}: for_each variable {name!r} hides a setting or folder")
        source = for_each[name]
        if isinstance(source, str):
            source = evaluate(source.strip("{}"), scope, f"{where}, for_each {name}")
        if not isinstance(source, list):
            raise ValueError(f"{where}: for_each {name} must be a list, got {source!r}")
        values.append(source)
    for combo in itertools.product(*values):
        yield dict(zip(names, combo, strict=True))


# --- writing values ------------------------------------------------------------------------------


def scalar(value: Any, where: str) -> str:
    """``value`` as it is written inside a larger string or as a parameter: booleans ``true`` and
    ``false``, numbers as Python writes them, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"{where}: {value!r} cannot be written here (a number, string or boolean)")


def argument(value: Any, where: str) -> str:
    """``value`` as one shell word of a runner command: a list as ``"[a, b]"`` (strings
    ``"[a,b]"``), a string quoted only where the shell needs it."""
    if isinstance(value, list):
        items = [scalar(v, where) for v in value]
        if any('"' in i or "$" in i or "`" in i or "\\" in i for i in items):
            raise ValueError(f"{where}: list items may not hold quotes, $, ` or \\: {value!r}")
        sep = "," if value and all(isinstance(v, str) for v in value) else ", "
        return f'"[{sep.join(items)}]"'
    if value is None or isinstance(value, Mapping):
        raise ValueError(f"{where}: {value!r} is not a parameter value (number, string, list)")
    text = scalar(value, where)
    return text if isinstance(value, bool | int | float) else shlex.quote(text)


def parameters(params: Any, scope: Mapping[str, Any], where: str) -> list[str]:
    """``-p NAME VALUE`` words for a mapping of parameters."""
    if params is None:
        return []
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: parameters must be a mapping NAME: VALUE, got {params!r}")
    words = []
    for name, template in params.items():
        value = expand(template, scope, f"{where}, parameter {name}")
        words += ["-p", str(name), argument(value, f"{where}, parameter {name}")]
    return words


# --- the profile ---------------------------------------------------------------------------------


def _known_keys(mapping: Mapping, accepted: Sequence[str], where: str) -> None:
    """``ValueError`` naming the keys of ``mapping`` that are not ``accepted``, and those."""
    unknown = set(mapping) - set(accepted)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"accepted: {', '.join(accepted)}"
        )


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _override(text: str, default: Any, name: str) -> Any:
    """An override given as text, read as the type of the setting's default."""
    if isinstance(default, bool):
        if text.strip().lower() in ("1", "true"):
            return True
        if text.strip().lower() in ("0", "false"):
            return False
        raise ValueError(f"setting {name} is a boolean: give 1, 0, true or false, not {text!r}")
    if isinstance(default, list):
        return [yaml.safe_load(word) for word in text.split()]
    if isinstance(default, int | float):
        try:
            return type(default)(text)
        except ValueError:
            raise ValueError(
                f"setting {name} is a {type(default).__name__}, not {text!r}"
            ) from None
    return text


class Profile:
    """A profile's settings (overrides applied), protocols and argument groups."""

    def __init__(
        self,
        data: Any,
        overrides: Mapping[str, str] | None = None,
        source: str = "profile",
    ) -> None:
        data = _mapping(data, source)
        _known_keys(data, PROFILE_KEYS, source)
        self.source = source
        raw = _mapping(data.get("settings"), f"{source}: settings")
        self.protocols = _mapping(data.get("protocols"), f"{source}: protocols")
        self.groups = _mapping(data.get("args"), f"{source}: args")
        for name in (*raw, *self.protocols, *self.groups):
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", str(name)):
                raise ValueError(f"{source}: {name!r}: names are lower_case_with_underscores")
        both = set(self.protocols) & set(self.groups)
        if both:
            raise ValueError(f"{source}: {', '.join(sorted(both))} both a protocol and a group")
        #: the names the settings' own expressions use
        self.used = set(_names_in(list(raw.values())))
        defaults = self._resolve(raw)
        self.raw_args: dict[str, str] = {}
        for key, text in (overrides or {}).items():
            if key in raw:
                raw[key] = _override(text, defaults[key], key)
            elif key.endswith("_args") and key[: -len("_args")] in self.groups:
                self.raw_args[key[: -len("_args")]] = " ".join(text.split())
            else:
                accepted = [*raw, *(f"{g}_args" for g in self.groups)]
                raise ValueError(
                    f"{source}: cannot override {key!r}; accepted: {', '.join(accepted)}"
                )
        self.settings = self._resolve(raw)

    def _resolve(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        done: dict[str, Any] = {}

        def get(name: str, stack: tuple[str, ...]) -> Any:
            if name in done:
                return done[name]
            if name in stack:
                raise ValueError(f"{self.source}: settings refer to each other: {stack + (name,)}")
            value = raw[name]
            if isinstance(value, str) and _EXPR.fullmatch(value):

                class Lazy(dict):
                    def __missing__(self, key: str) -> Any:
                        if key not in raw:
                            raise KeyError(key)
                        return get(key, (*stack, name))

                    def __contains__(self, key: object) -> bool:
                        return key in raw

                    def __iter__(self) -> Iterator[str]:
                        return iter(raw)

                lazy = Lazy()
                value = evaluate(value[1:-1], lazy, f"{self.source}: setting {name}")
            done[name] = value
            return value

        for name in raw:
            get(name, ())
        return done

    def group(self, name: str, where: str, stack: tuple[str, ...] = ()) -> list[str]:
        """The ``-p`` words of argument group ``name`` (its override, if one was given)."""
        if name in self.raw_args:
            return [self.raw_args[name]] if self.raw_args[name] else []
        if name not in self.groups:
            raise ValueError(
                f"{where}: the profile {self.source} has no args group {name!r} (give it one, "
                f"{{}} for none); its groups: {', '.join(self.groups)}"
            )
        return self._parts(self.groups[name], f"{self.source}: args {name}", (*stack, name))

    def _parts(self, spec: Any, where: str, stack: tuple[str, ...]) -> list[str]:
        items = spec if isinstance(spec, list) else [spec]
        words: list[str] = []
        names: list[str] = []
        for item in items:
            if isinstance(item, str):
                if item in stack:
                    raise ValueError(f"{where}: groups refer to each other: {(*stack, item)}")
                if item in self.protocols:
                    part = self._parts(self.protocols[item], f"{self.source}: protocol {item}",
                                       (*stack, item))  # fmt: skip
                elif item in self.groups:
                    part = self.group(item, where, stack)
                else:
                    raise ValueError(
                        f"{where}: {item!r} is neither a protocol nor an args group; "
                        f"protocols: {', '.join(self.protocols) or 'none'}; "
                        f"groups: {', '.join(self.groups)}"
                    )
            elif isinstance(item, Mapping) or item is None:
                part = parameters(item, self.settings, where)
            else:
                raise ValueError(f"{where}: {item!r}: give a mapping of parameters or a name")
            names += [part[i + 1] for i in range(0, len(part) - 2, 3) if part[i] == "-p"]
            words += part
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{where}: parameter(s) {', '.join(repeated)} given twice")
        return words


# --- the table -----------------------------------------------------------------------------------


def _names_in(value: Any) -> Iterator[str]:
    """Every name the ``{EXPR}`` strings (and for_each sources) inside ``value`` use."""
    if isinstance(value, Mapping):
        for key, v in value.items():
            if key == "for_each" and isinstance(v, Mapping):
                for source in v.values():
                    if isinstance(source, str):
                        yield from _names_in("{" + source.strip("{}") + "}")
            yield from _names_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _names_in(v)
    elif isinstance(value, str):
        for m in _EXPR.finditer(value):
            try:
                tree = ast.parse(m.group(1).strip(), mode="eval")
            except SyntaxError:
                continue
            yield from (n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def needed_files(run: Run) -> list[str]:
    """The files ``run`` needs (its ``needs_file``: one path or a list)."""
    needs = run.needs_file
    return [] if not needs else [str(n) for n in (needs if isinstance(needs, list) else [needs])]


def missing_files(run: Run, exists: Any = os.path.exists) -> list[str]:
    """The files ``run`` needs that are not there (empty: it runs)."""
    return [f for f in needed_files(run) if not exists(f)]


def expand_runs(
    table: Any,
    profile: Profile,
    folders: Mapping[str, str],
    *,
    exists: Any = os.path.exists,
) -> list[Run]:
    """Every run of ``table`` (its ``runs:`` rows expanded over ``for_each``) under ``profile``,
    with ``folders`` (name -> path as given; ``reports`` required), its upstream names resolved
    and checked. ``exists`` tells whether a run's ``needs_file`` is there."""
    table = _mapping(table, "the table")
    if set(table) != {"runs"} or not isinstance(table["runs"], list):
        raise ValueError(f"the table must have one key, runs: a list of rows; got {list(table)}")
    clash = set(folders) & set(profile.settings)
    if clash:
        raise ValueError(f"settings {', '.join(sorted(clash))} have the names of folders")
    given = {**profile.settings, **folders}
    absolute = {**profile.settings, **{k: os.path.abspath(v) for k, v in folders.items()}}
    used: set[str] = set()
    runs: list[Run] = []
    pending: list[tuple[Run, list, dict]] = []
    for i, row in enumerate(table["runs"], 1):
        where = f"row {i}" + (f" ({row.get('name')})" if isinstance(row, Mapping) else "")
        row = _mapping(row, where)
        _known_keys(row, ROW_KEYS, where)
        if "name" not in row or (("notebook" in row) == ("module" in row)):
            raise ValueError(f"{where}: a row needs a name and either a notebook or a module")
        if "module" in row and any(k in row for k in ("params", "params_after")):
            raise ValueError(f"{where}: a module row takes args (a string), not params")
        used |= set(_names_in({k: v for k, v in row.items() if k != "name"}))
        used |= set(_names_in(row["name"]))
        combos = combinations(row["for_each"], given, where) if "for_each" in row else [{}]
        for combo in combos:
            scope_given, scope_abs = {**given, **combo}, {**absolute, **combo}
            name = expand(row["name"], scope_given, where)
            if not isinstance(name, str) or not re.fullmatch(r"[\w.+-]+", name):
                raise ValueError(f"{where}: run name {name!r}: letters, digits, . _ + - only")
            here = f"run {name}"
            if "notebook" in row:
                kind, target = "notebook", f"notebooks/{row['notebook']}.ipynb"
                words = [target, f"{folders['reports']}/{name}"]
                words += parameters(row.get("params"), scope_abs, here)
                if row.get("args") is not None:
                    words += profile.group(str(row["args"]), here)
                words += parameters(row.get("params_after"), scope_abs, here)
            else:
                kind, target = "module", str(row["module"])
                text = expand(row.get("args", ""), scope_given, here)
                words = [scalar(text, here)] if text else []
            needs = row.get("needs_file")
            run = Run(
                name=name,
                kind=kind,
                target=target,
                args=" ".join(" ".join(words).split()),
                needs_file=expand(needs, scope_given, here) if needs else None,
                outputs=[
                    scalar(o, here) for o in expand(row.get("outputs") or [], scope_abs, here)
                ],
            )
            runs.append(run)
            pending.append((run, row.get("upstream") or [], scope_given))
    names = [r.name for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"runs declared twice: {', '.join(twice)}")
    left_out = {r.name for r in runs if missing_files(r, exists)}
    for run, upstream, scope in pending:
        if not isinstance(upstream, list):
            raise ValueError(f"run {run.name}: upstream must be a list, got {upstream!r}")
        found: list[str] = []
        for entry in upstream:
            wanted = expand(entry, scope, f"run {run.name}, upstream")
            for pattern in wanted if isinstance(wanted, list) else [wanted]:
                pattern = scalar(pattern, f"run {run.name}, upstream")
                hits = [n for n in names if fnmatch.fnmatchcase(n, pattern) and n != run.name]
                if not hits:
                    raise ValueError(
                        f"run {run.name}: upstream {pattern!r} names no run; "
                        f"runs: {', '.join(names)}"
                    )
                found += [n for n in hits if n not in found and n not in left_out]
        run.upstream = found
    unused = set(profile.settings) - used - profile.used
    if unused:
        raise ValueError(
            f"{profile.source}: setting(s) {', '.join(sorted(unused))} used by no run; "
            f"the table uses: {', '.join(sorted(used & set(profile.settings)))}"
        )
    return runs


# --- make rules ----------------------------------------------------------------------------------


def _make_escape(text: str) -> str:
    return text.replace("$", "$$")


def render(runs: Sequence[Run], reports: str, header: str = "") -> str:
    """The make rules of ``runs``, whose reports and stamps live under ``reports``."""
    lines = [f"# Generated by python -m obd.pipeline.rules{header}: do not edit.", ""]
    params = f"{reports}/.params"
    for run in runs:
        deps = [run.target] if run.kind == "notebook" else []
        deps += ["$(LIB_DEPS)", f"{params}/{run.name}.args"]
        deps += [f"{reports}/{u}.html" for u in run.upstream]
        command = "$(RUN)" if run.kind == "notebook" else f"$(PY) -m {run.target}"
        lines += [
            f"{reports}/{run.name}.html: {' '.join(deps)} | $(STAMP)",
            f"\t{command} {_make_escape(run.args)}",
            "",
        ]
    lines += [f"{params}/%.args: ;  # a missing stamp (deleted by hand) counts as changed", ""]
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` (atomically) unless it already holds it; whether it wrote."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text(path, text)
    return True


def write_stamps(runs: Sequence[Run], reports: str) -> list[str]:
    """Write each run's arguments to ``reports/.params/NAME.args`` where they changed; the names
    of the runs whose stamps were written."""
    stamps = Path(reports, ".params")
    return [r.name for r in runs if write_if_changed(stamps / f"{r.name}.args", r.args + "\n")]


def figures(table: Any) -> dict[str, dict[str, str]]:
    """The figures the table's runs declare: file stem -> ``{"title", "caption", "short",
    "seeds", "run"}`` (``run``: the row's name; ``short`` defaults to the title, ``seeds`` to
    ""). Only a row without ``for_each`` may declare figures (one run draws each), and a stem is
    declared once; anything else is a ValueError naming the row."""
    table = _mapping(table, "the table")
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(table.get("runs") or [], 1):
        row = _mapping(row, f"row {i}")
        if "figures" not in row:
            continue
        where = f"row {i} ({row.get('name')})"
        if "for_each" in row:
            raise ValueError(f"{where}: a row with for_each cannot declare figures")
        for stem, spec in _mapping(row["figures"], f"{where}: figures").items():
            spec = _mapping(spec, f"{where}: figure {stem}")
            missing = [k for k in FIGURE_KEYS if not isinstance(spec.get(k), str)]
            unknown = set(spec) - set(FIGURE_KEYS) - set(FIGURE_OPTIONAL)
            if missing or unknown:
                raise ValueError(
                    f"{where}: figure {stem} needs the text fields {', '.join(FIGURE_KEYS)} and "
                    f"accepts {', '.join(FIGURE_OPTIONAL)}; missing {missing or 'none'}, "
                    f"unknown {sorted(unknown) or 'none'}"
                )
            if stem in out:
                raise ValueError(
                    f"{where}: figure {stem} is already declared by {out[stem]['run']}"
                )
            out[str(stem)] = {
                "title": spec["title"],
                "caption": " ".join(spec["caption"].split()),
                "short": str(spec.get("short", spec["title"])),
                "seeds": str(spec.get("seeds", "")),
                "run": str(row["name"]),
            }
    return out


def load(path: str | os.PathLike) -> Any:
    """A YAML file's content; a clear ValueError if it is missing or not YAML."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} takes NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: print or write the rules (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m obd.pipeline.rules", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--table", default="configs/runs.yaml")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--reports", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--figures", required=True)
    parser.add_argument("--folder", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--env", action="store_true", help="overrides from the environment")
    parser.add_argument("--out", help="write the rules here (only if changed), not to stdout")
    parser.add_argument("--write-stamps", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the runs instead")
    a = parser.parse_args(argv)
    try:
        folders = {"reports": a.reports, "results": a.results, "figures": a.figures}
        folders |= _pairs(a.folder, "--folder")
        table, data = load(a.table), load(a.profile)
        settings = _mapping(_mapping(data, a.profile).get("settings"), f"{a.profile}: settings")
        groups = _mapping(_mapping(data, a.profile).get("args"), f"{a.profile}: args")
        overrides = {}
        if a.env:
            names = [*settings, *(f"{g}_args" for g in groups)]
            overrides = {n: os.environ[n.upper()] for n in names if n.upper() in os.environ}
        overrides |= {k.lower(): v for k, v in _pairs(a.set, "--set").items()}
        profile = Profile(data, overrides, source=a.profile)
        runs = expand_runs(table, profile, folders)
    except ValueError as e:
        print(f"obd.pipeline.rules: {e}", file=sys.stderr)
        return 2
    for r in runs:
        missing = missing_files(r)
        if missing:
            print(f"skipping {r.name}: missing {', '.join(missing)}", file=sys.stderr)
    if a.list:
        for r in runs:
            print(f"{r.name}\t{r.target}\tupstream: {', '.join(r.upstream) or '-'}")
            for o in r.outputs:
                print(f"\t-> {o}")
        return 0
    if a.write_stamps:
        write_stamps(runs, a.reports)
    text = render(runs, a.reports, f" from {a.table} and {a.profile}")
    if a.out:
        write_if_changed(Path(a.out), text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
