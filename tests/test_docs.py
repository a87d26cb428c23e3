"""The documentation holds together: every relative link and anchor in README.md and docs/*.md resolves (GitHub's
heading anchors), and every `roadseg ...` command shown in a code block or inline code exists in the CLI, with the
options it shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from roadseg.cli import cli

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# `roadseg` as a command: at the start of the code, after whitespace or a path (.venv/bin/roadseg), then a space.
COMMAND = re.compile(r"(?:^|(?<=[\s/(]))roadseg(?=[ \t]+\S)(.*)$", re.M)
GLOBAL_VALUE_OPTIONS = {"--env", "--region"}
SHELL_COMMENT = re.compile(r"(?:^|(?<=\s))#.*$", re.M)


def documentation_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, fenced code blocks): the lines outside fenced code blocks, and each block's text."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            if block is None:
                block = []
            else:
                blocks.append("\n".join(block))
                block = None
            continue
        (prose if block is None else block).append(line)
    return prose, blocks


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup removed, lowercase, punctuation except '-' and '_' dropped, each space
    a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_code(path.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def prose_without_inline_code(line: str) -> str:
    return INLINE_CODE.sub("", line)


def broken_links(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        prose, _ = split_code(path.read_text())
        for line in prose:
            for target in LINK.findall(prose_without_inline_code(line)):
                if SCHEME.match(target):
                    continue  # https:, mailto: ...: not checked offline
                file_part, _, anchor = target.partition("#")
                destination = (path.parent / file_part).resolve() if file_part else path
                where = path.relative_to(files[0].parent)  # files[0]: README.md at the root
                if not destination.exists():
                    problems.append(f"{where}: link to {target}: {file_part} does not exist")
                    continue
                if anchor:
                    if destination.suffix != ".md" or destination.is_dir():
                        problems.append(f"{where}: link to {target}: anchors are checked in .md files only")
                    elif anchor not in anchors(destination):
                        problems.append(f"{where}: link to {target}: no heading with anchor #{anchor} in "
                                        f"{destination.name}")
    return problems


def shown_code(path: Path) -> list[str]:
    """The code shown in a page: every fenced block and every inline code span outside them."""
    prose, blocks = split_code(path.read_text())
    spans = [match.group(2) for line in prose for match in INLINE_CODE.finditer(line)]
    return blocks + spans


def _tokens(rest: str) -> list[str]:
    rest = rest.replace("\\|", "|")
    try:
        words = shlex.split(rest, comments=False)
    except ValueError:
        words = rest.split()
    return [word.strip("[]()") for word in words]


def _options(command: click.Command) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)} | {"-h", "--help"}


def _takes_value(command: click.Command, option: str) -> bool:
    """Does ``option`` of ``command`` take a value (so the next word is not a command)?"""
    for parameter in command.params:
        if isinstance(parameter, click.Option) and option in (*parameter.opts, *parameter.secondary_opts):
            return not parameter.is_flag and not parameter.count
    return option in GLOBAL_VALUE_OPTIONS


def unknown_commands(code: str, root: click.Group = cli) -> list[str]:
    """The `roadseg ...` invocations in ``code`` whose command or options the CLI lacks."""
    problems = []
    code = SHELL_COMMENT.sub("", code)  # `# ... the roadseg command` in a comment is prose
    for match in COMMAND.finditer(code):
        shown = "roadseg" + match.group(1).rstrip()
        words = _tokens(match.group(1))
        command: click.Command = root
        position = 0
        while position < len(words):
            word = words[position]
            if word.startswith("-"):
                option = word.split("=", 1)[0].split("|", 1)[0]
                if option.startswith("--") or re.fullmatch(r"-[a-zA-Z]+", option):
                    if option not in _options(command) and not (
                            re.fullmatch(r"-v+", option) and command is root):
                        problems.append(f"{shown}: {option} is not an option of "
                                        f"{'roadseg' if command is root else command.name}")
                if "=" not in word and _takes_value(command, option):
                    position += 1  # its value (global options are accepted on every group and command too)
                position += 1
                continue
            if isinstance(command, click.Group):
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break  # an argument placeholder of a group shown without its command
                sub = command.commands.get(word)
                if sub is None:
                    problems.append(f"{shown}: no command {word!r} in "
                                    f"{'roadseg' if command is root else 'roadseg ' + command.name}")
                    break
                command = sub
                position += 1
                continue
            position += 1  # an argument of the command
    return problems


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(documentation_files()) == []


def test_every_shown_roadseg_command_exists():
    problems = [f"{path.relative_to(ROOT)}: {problem}" for path in documentation_files()
                for code in shown_code(path) for problem in unknown_commands(code)]
    assert problems == []


def test_the_docs_map_lists_every_page():
    readme = (ROOT / "README.md").read_text()
    assert [page.name for page in sorted((ROOT / "docs").glob("*.md")) if f"](docs/{page.name})" not in readme] == []


def test_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


# -- the checkers themselves --------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Segment anywhere: `roadseg segment`\n\n## Twice\n\n"
                                               "## Twice\n\n```bash\n# not a heading\n```\n")
    (tmp_path / "docs" / "picture.png").write_bytes(b"png")
    return tmp_path


def _readme(tree: Path, text: str) -> list[str]:
    (tree / "README.md").write_text(text)
    return broken_links(documentation_files(tree))


def test_good_links_pass(tree):
    assert _readme(tree, "[p](docs/page.md) [s](docs/page.md#segment-anywhere-roadseg-segment) "
                         "[t](docs/page.md#twice-1) ![x](docs/picture.png) [w](https://example.com/x#y) "
                         "[self](#front)\n\n# Front\n") == []


def test_a_missing_file_fails(tree):
    assert _readme(tree, "see [the page](docs/missing.md)\n") == [
        "README.md: link to docs/missing.md: docs/missing.md does not exist"]


def test_a_missing_anchor_fails(tree):
    problems = _readme(tree, "[a](docs/page.md#not-there) [b](docs/page.md#not-a-heading) [c](#nowhere)\n")
    assert len(problems) == 3 and all("no heading with anchor" in problem for problem in problems)


def test_a_broken_link_inside_docs_fails(tree):
    (tree / "docs" / "other.md").write_text("[up](../README.md#gone) [side](page.md#a-page)\n")
    assert _readme(tree, "# Front\n") == ["docs/other.md: link to ../README.md#gone: no heading with anchor #gone in "
                                          "README.md"]


def test_links_in_code_are_not_links(tree):
    assert _readme(tree, "`[x](nowhere.md)`\n\n```\n[y](nowhere.md)\n```\n") == []


def test_github_slugs():
    assert github_slug("Quality gates (all in `make test`)") == "quality-gates-all-in-make-test"
    assert github_slug("Changing an endpoint's instance type") == "changing-an-endpoints-instance-type"
    assert github_slug("Portable models: the edge bundle") == "portable-models-the-edge-bundle"
    assert github_slug("snake_case and-dash") == "snake_case-and-dash"


def test_unknown_commands_and_options_are_found():
    assert unknown_commands("roadseg --env prod env preflight --json") == []
    assert unknown_commands(".venv/bin/roadseg model approve 7 --note \"ok\"") == []
    assert unknown_commands("roadseg data") == []
    assert unknown_commands("roadseg segment a.jpg --bundle ./b --device cpu") == []
    assert unknown_commands("roadseg pipeline launch --dataset x") == ["roadseg pipeline launch --dataset x: no "
                                                                       "command 'launch' in roadseg pipeline"]
    assert unknown_commands("roadseg deploy") == ["roadseg deploy: no command 'deploy' in roadseg"]
    assert unknown_commands("roadseg endpoint invoke f.jpg --out out/") == [
        "roadseg endpoint invoke f.jpg --out out/: --out is not an option of invoke"]
    assert unknown_commands("python -m roadseg.smoke; repository: your-org/roadseg") == []
    assert unknown_commands("make synth   # installs the roadseg command\nroadseg data upload d  # 6 roadseg x") == []


def test_the_contracts_page_lists_every_registered_rule_and_no_other() -> None:
    """docs/contracts.md's rule table and stacks.checks.service_contracts.RULES name the same rules."""
    from stacks.checks.service_contracts import RULES

    page = (ROOT / "docs" / "contracts.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", page, flags=re.MULTILINE))
    assert listed == set(RULES), f"missing: {sorted(set(RULES) - listed)}; unknown: {sorted(listed - set(RULES))}"
