"""The README and docs/ stay true to the code: the README is a short front door that opens with the two set-up
commands (the second is the test command .ci/run runs), every relative link lands on a file and heading, every
``advkit ...`` line in a code block names a real command with real options, every config and result file the
docs name exists, Python snippets import real names, and the generated-table blocks are well formed."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
SETUP = ('pip install -e . && advkit attack --fgsm',
         'pip install -e ".[dev]" && python -m pytest -q -m "not gpu and not slow" -p no:cacheprovider')
# the generated-table blocks python -m bench.tables fills, and the page each must appear on
BLOCK_IDS = {"headline": "README.md", "attack-speed": "attacks.md", "train-mnist": "training.md",
             "eval-speed": "evaluation.md", "gan-mnist": "gans.md", "detect": "detection.md",
             "first-run": "install.md"}

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
BLOCK = re.compile(r"<!-- bench:(?P<id>[A-Za-z0-9_.:-]+) -->(?P<body>.*?)<!-- /bench:(?P=id) -->", re.S)
MARKER = re.compile(r"<!-- (/?)bench:([A-Za-z0-9_.:-]+) -->")
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _fences(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


def _prose(text: str) -> str:
    """The page without its fenced code blocks (links and headings there are not rendered)."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in HEADING.findall(_prose(_text(page)))}


def _root() -> click.Group:
    """The ``advkit`` root group, found in :mod:`advkit.cli` (whatever the restructure names it)."""
    import advkit.cli as pkg

    groups = [v for v in vars(pkg).values() if isinstance(v, click.Group) and "attack" in v.commands]
    main = getattr(pkg, "main", None)
    if isinstance(main, click.Group):
        groups.insert(0, main)
    elif main is not None and hasattr(main, "__dict__") and not callable(main):  # a module advkit.cli.main
        groups += [v for v in vars(main).values() if isinstance(v, click.Group) and "attack" in v.commands]
    assert groups, "no click group with an 'attack' command in advkit.cli"
    return groups[0]


def _command_lines() -> list[tuple[str, str, list[str]]]:
    """(page, line, argv after ``advkit``) for every advkit invocation in a shell code block."""
    found = []
    for page in PAGES:
        for lang, body in _fences(_text(page)):
            if lang not in SHELL_LANGS:
                continue
            for line in body.replace("\\\n", " ").splitlines():
                try:
                    tokens = shlex.split(line, comments=True)
                except ValueError as e:
                    pytest.fail(f"{page.name}: cannot parse {line!r}: {e}")
                segment: list[str] = []
                for tok in [*tokens, "&&"]:
                    if tok not in ("&&", "||", ";", "|"):
                        segment.append(tok)
                        continue
                    words = segment
                    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
                        words = words[1:]  # VAR=value before the command
                    if words[:1] == ["advkit"]:
                        found.append((page.name, line.strip(), words[1:]))
                    elif "-m" in words and words[words.index("-m") + 1:][:1] == ["advkit"]:
                        found.append((page.name, line.strip(), words[words.index("-m") + 2:]))
                    segment = []
    return found


def _resolve(root: click.Group, argv: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """Walk ``argv`` down the command tree: (command path, the command, the arguments left for it)."""
    args = list(argv)
    root_opts = {o for p in root.params for o in p.opts} | {"-h", "--help"}
    while args and args[0].startswith("-"):
        assert args[0] in root_opts, f"advkit has no option {args[0]}"
        args.pop(0)
    path, cmd = [], root
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in cmd.commands, \
            f"{' '.join(['advkit', *path])} has no command {name!r}; valid: {sorted(cmd.commands)}"
        path.append(name)
        cmd = cmd.commands[name]
    return path, cmd, args


# ---------------------------------------------------------------------------------------------- the README
def test_readme_is_a_short_front_door():
    lines = _text(README).splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_opens_with_the_two_setup_commands():
    fences = _fences(_text(README))
    assert fences, "README.md has no code block"
    first = [ln.strip() for ln in fences[0][1].splitlines() if ln.strip()]
    assert first == list(SETUP), first


def test_ci_runs_the_readmes_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    install, test_cmd = (part.strip() for part in SETUP[1].split("&&"))
    assert test_cmd in {ln.strip() for ln in ci.splitlines()}, f".ci/run does not run {test_cmd!r}"
    assert '-e ".[dev]"' in ci and install.startswith("pip install")


# ---------------------------------------------------------------------------------------------- links
def _links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for target in LINK.findall(_prose(_text(page)))]


def test_pages_have_links():
    assert any(page == README for page, _ in _links()), "README.md links nothing in docs/"
    assert {p.name for p in DOCS} >= {"attacks.md", "training.md", "evaluation.md", "gans.md", "detection.md",
                                      "architecture.md", "benchmarks.md", "install.md"}


def test_every_relative_link_points_at_a_file():
    bad = []
    for page, target in _links():
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor on the same page (checked below)
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            bad.append(f"{page.relative_to(REPO)}: {target}")
    assert bad == [], "\n".join(bad)


def test_every_anchor_names_a_heading():
    bad = []
    for page, target in _links():
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or "#" not in target:
            continue
        path, anchor = target.split("#", 1)
        dest = (page.parent / path) if path else page
        if dest.suffix == ".md" and dest.is_file() and anchor not in _anchors(dest):
            bad.append(f"{page.relative_to(REPO)}: {target} (headings: {sorted(_anchors(dest))})")
    assert bad == [], "\n".join(bad)


# ---------------------------------------------------------------------------------------------- commands
def test_docs_show_advkit_commands():
    pages = {page for page, _, _ in _command_lines()}
    assert {"README.md", "attacks.md", "training.md", "evaluation.md", "gans.md", "detection.md"} <= pages


def test_every_advkit_command_line_names_a_real_command_and_options():
    root = _root()
    bad = []
    for page, line, argv in _command_lines():
        try:
            path, cmd, args = _resolve(root, argv)
        except AssertionError as e:
            bad.append(f"{page}: {line}\n    {e}")
            continue
        opts = {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]} | {"-h", "--help"}
        for arg in args:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if arg.startswith("-") and not re.fullmatch(r"-[\d.]+", arg) and name not in opts:
                bad.append(f"{page}: {line}\n    {' '.join(['advkit', *path])} has no option {name}")
    assert bad == [], "\n".join(bad)


def test_help_of_every_documented_command_runs():
    root = _root()
    paths = set()
    for _, _, argv in _command_lines():
        try:
            paths.add(tuple(_resolve(root, argv)[0]))
        except AssertionError:
            continue  # reported by the test above
    runner = CliRunner()
    for path in sorted(paths):
        result = runner.invoke(root, [*path, "--help"])
        assert result.exit_code == 0, f"advkit {' '.join(path)} --help: {result.output}{result.exception!r}"
        assert "Usage:" in result.output


# ---------------------------------------------------------------------------------------------- files named
def test_every_config_named_exists():
    named = {m for page in PAGES for m in re.findall(r"configs/[\w./-]+?\.ya?ml", _text(page))}
    assert named, "the docs name no config"
    missing = sorted(c for c in named if not (REPO / c).is_file())
    assert missing == [], missing


def test_every_result_file_named_exists():
    bad = []
    for page in PAGES:
        for name in re.findall(r"bench/results/[a-z0-9_.*-]+", _text(page)):  # upper-case NAME: a placeholder
            name = name.rstrip(".")
            if name.endswith("/"):
                continue
            if not (list(REPO.glob(name)) if "*" in name else (REPO / name).is_file()):
                bad.append(f"{page.name}: {name}")
    assert bad == [], bad


def test_python_snippets_import_real_names():
    bad = []
    for page in PAGES:
        for lang, body in _fences(_text(page)):
            if lang != "python":
                continue
            for node in ast.walk(ast.parse(body)):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "advkit":
                    module = importlib.import_module(node.module)
                    bad += [f"{page.name}: from {node.module} import {a.name}" for a in node.names
                            if not hasattr(module, a.name)]
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.split(".")[0] == "advkit":
                            importlib.import_module(a.name)
    assert bad == [], bad


# ---------------------------------------------------------------------------------------------- tables
def test_bench_blocks_are_well_formed():
    for page in PAGES:
        stack = []
        for m in MARKER.finditer(_text(page)):
            closing, block_id = m.group(1) == "/", m.group(2)
            if closing:
                assert stack and stack[-1] == block_id, f"{page.name}: stray or crossed end of bench:{block_id}"
                stack.pop()
            else:
                assert not stack, f"{page.name}: bench:{block_id} opens inside bench:{stack[-1]}"
                stack.append(block_id)
        assert not stack, f"{page.name}: bench:{stack[-1]} is never closed"
        for m in BLOCK.finditer(_text(page)):
            assert m.group("body").strip(), f"{page.name}: bench:{m.group('id')} is empty"


def test_tables_sit_where_they_belong():
    ids = {p.name: {m.group("id") for m in BLOCK.finditer(_text(p))} for p in PAGES}
    missing = [f"{name}: bench:{block_id}" for block_id, name in BLOCK_IDS.items() if block_id not in ids.get(name, ())]
    assert missing == [], missing


def test_no_issue_numbers_or_dates_outside_generated_tables():
    bad = []
    for page in PAGES:
        text = BLOCK.sub("", _text(page))
        for pattern in (r"\bissues? #?\d+", r"(?<![\w/])#\d+\b", r"\b20\d\d-\d\d-\d\d\b"):
            bad += [f"{page.name}: {m.group(0)}" for m in re.finditer(pattern, text, re.I)]
    assert bad == [], bad
