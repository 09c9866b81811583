"""The README's command and Python blocks run as written, so the README cannot drift.

Every ```sh block runs line by line in a fresh folder that holds the sample photo as
``photo.jpg`` (and as ``samples/rocket.jpg``, which the first block names) and the
transparent sample icon as ``logo.png``, with the
installed ``kpal`` console script first on PATH. A reader pasting the blocks one after the
other into one folder also meets the files earlier blocks wrote: every command that writes
such a file runs again with that file in place. The ```python blocks run in order in one
namespace, in a fresh process where every warning is an error.

A few commands are not run, by an explicit rule (``_skip_reason``): commands that install
or set up an environment (``python3 -m venv``, activating it, ``pip install``, ``sudo``),
and the development commands that run on the repository itself (``python -m pytest``,
``ruff check``), which must instead appear verbatim in ``.ci/run``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
SAMPLE = ROOT / "samples" / "rocket.jpg"
LOGO = ROOT / "samples" / "logo.png"
VENV_BIN = Path(sys.executable).parent

#: Commands that install or set up an environment: a test cannot create one per run.
SETUP_PREFIXES = ("python3 -m venv", ". .venv/bin/activate", "source .venv/bin/activate",
                  "pip install", "sudo ")
#: Development commands that run on the repository; .ci/run must run each of them verbatim.
DEV_PREFIXES = ("python -m pytest", "ruff check")

_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def readme_blocks(language: str) -> list[tuple[int, str]]:
    """The README's fenced blocks of one language.

    Parameters
    ----------
    language : str
        The fence's info string, e.g. ``"sh"`` or ``"python"``.

    Returns
    -------
    list of (int, str)
        The README line number of each block's first line, and the block's text.
    """
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start(2)) + 1, match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1) == language
    ]


def command_lines(block: tuple[int, str]) -> list[tuple[int, str]]:
    """A ```sh block's commands: (README line, command), comments and blank lines dropped,
    lines ending in a backslash joined to the next."""
    first, text = block
    commands: list[tuple[int, str]] = []
    continued = False
    for offset, line in enumerate(text.splitlines()):
        line = _strip_comment(line)
        if continued:
            commands[-1] = (commands[-1][0], f"{commands[-1][1][:-1].rstrip()} {line.strip()}")
        elif line:
            commands.append((first + offset, line))
        continued = line.endswith("\\")
    return commands


def _strip_comment(line: str) -> str:
    """The line without its trailing ``# comment`` (quotes respected)."""
    in_quote = None
    for index, char in enumerate(line):
        if in_quote:
            in_quote = None if char == in_quote else in_quote
        elif char in "'\"":
            in_quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def _skip_reason(command: str) -> str | None:
    """Why one ``&&``-separated command is not run, or None to run it."""
    if command.startswith(SETUP_PREFIXES):
        return "installs or sets up an environment"
    if command.startswith(DEV_PREFIXES):
        return "runs on the repository: .ci/run runs it"
    return None


def runnable(line: str) -> tuple[str, list[str]]:
    """Split a command line at ``&&``: the part to run and the commands skipped by rule."""
    parts = [part.strip() for part in _strip_comment(line).split("&&")]
    kept = [part for part in parts if _skip_reason(part) is None]
    return " && ".join(kept), [part for part in parts if _skip_reason(part) is not None]


def written_files(command: str) -> list[str]:
    """The files a command names as its output (``-o FILE``, ``--output FILE``, ``> FILE``)."""
    tokens = shlex.split(command)
    outputs = []
    for before, after in zip(tokens, tokens[1:], strict=False):
        if before in ("-o", "--output", ">") and after != "-":
            outputs.append(after)
    return outputs


def fresh_folder(path: Path) -> Path:
    """A folder with the sample photo as photo.jpg and as samples/rocket.jpg, and the
    transparent sample icon as logo.png."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE, path / "photo.jpg")
    shutil.copyfile(LOGO, path / "logo.png")
    (path / "samples").mkdir(exist_ok=True)
    shutil.copyfile(SAMPLE, path / "samples" / "rocket.jpg")
    return path


def cli_environment() -> dict[str, str]:
    """The environment with this interpreter's scripts (``kpal``) first on PATH."""
    kpal_script = VENV_BIN / "kpal"
    assert kpal_script.exists(), f"{kpal_script}: the kpal console script is not installed"
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Ran:
    """One README command run in a fresh folder: where, and which files it wrote."""

    line: int
    command: str
    folder: Path
    written: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


@dataclass
class BlockRun:
    """A ```sh block run top to bottom in a fresh folder: its commands, and its failure."""

    commands: list[Ran] = field(default_factory=list)
    failure: str | None = None


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.relative_to(folder).as_posix(): (path.stat().st_mtime_ns, path.stat().st_size)
            for path in folder.rglob("*") if path.is_file()}


def run_command(line: int, command: str, folder: Path) -> str | None:
    """Run one README command in ``folder``; the failure message, or None when it succeeds."""
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{command}"], cwd=folder, env=cli_environment(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        return (f"README.md:{line}: `{command}` exited {result.returncode}\n"
                f"stderr: {result.stderr.strip()}")
    for name in written_files(command):
        output = folder / name
        if name.endswith("/"):  # -o DIR/ of a batch: a folder with something in it
            if output.is_dir() and any(path.is_file() for path in output.rglob("*")):
                continue
            return f"README.md:{line}: `{command}` did not write into {name}"
        if not (output.is_file() and output.stat().st_size > 0):
            return f"README.md:{line}: `{command}` did not write {name}"
    return None


def run_sh_block(block: tuple[int, str], folder: Path) -> BlockRun:
    """Run a ```sh block's lines in order in ``folder``, up to the first that fails."""
    run = BlockRun()
    for line, text in command_lines(block):
        command, _ = runnable(text)
        if not command:
            continue
        before = _files(folder)
        run.failure = run_command(line, command, folder)
        after = _files(folder)
        written = sorted(name for name in after if after[name] != before.get(name))
        run.commands.append(Ran(line, command, folder, written,
                                [name for name in written if name not in before]))
        if run.failure:
            break
    return run


SH_BLOCKS = readme_blocks("sh")
PY_BLOCKS = readme_blocks("python")


def test_readme_has_blocks_to_run():
    assert len(SH_BLOCKS) >= 4 and len(PY_BLOCKS) >= 3


def test_setup_block_installs_kpal_and_runs_the_ci_test_command():
    # The first two command lines set up a virtual environment; they are checked, not run.
    lines = [line for _, line in command_lines(SH_BLOCKS[0])]
    assert len(lines) >= 2, lines
    install, tests = lines[0], lines[1]
    assert "python3 -m venv .venv" in install and "pip install . " in f"{install} "
    assert 'pip install -e ".[test]"' in tests
    test_command = tests.split("&&")[-1].strip()
    assert test_command == "python -m pytest -q"
    ci_lines = CI_SCRIPT.read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines, f".ci/run does not run the README's `{test_command}`"


def test_skip_rule_is_explicit_and_dev_commands_run_in_ci():
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    skipped = [part for block in SH_BLOCKS for _, line in command_lines(block)
               for part in runnable(line)[1]]
    assert skipped, "the setup commands must be recognised by the skip rule"
    for command in skipped:
        if command.startswith(DEV_PREFIXES):
            assert command in ci_lines, f".ci/run does not run the README's `{command}`"
    assert runnable("python3 -m venv .venv && . .venv/bin/activate && pip install . && "
                    "kpal info x.kpal") == (
        "kpal info x.kpal", ["python3 -m venv .venv", ". .venv/bin/activate", "pip install ."])
    assert runnable("sudo apt-get install pngquant") == ("", ["sudo apt-get install pngquant"])
    assert runnable("kpal decode photo.kpal -o photo.png  # by extension") == (
        "kpal decode photo.kpal -o photo.png", [])


def test_command_lines_drop_comments_and_join_continued_lines():
    block = (10, "# a comment\nkpal encode a.jpg \\\n    -k 8   # eight\n\nkpal info '#x.kpal'\n")
    assert command_lines(block) == [(11, "kpal encode a.jpg -k 8"), (14, "kpal info '#x.kpal'")]


def test_written_files_names_every_output():
    assert written_files("kpal encode a.jpg -k 64 -o out.kpal --seed 3") == ["out.kpal"]
    assert written_files("cat a.jpg | kpal encode - -k 8 > a.kpal") == ["a.kpal"]
    assert written_files("kpal info a.kpal --json") == []


@pytest.fixture(scope="module")
def sh_runs(tmp_path_factory) -> dict[int, BlockRun]:
    """Every ```sh block run once, each in its own fresh folder, keyed by its first line."""
    return {first: run_sh_block((first, text), fresh_folder(tmp_path_factory.mktemp(f"sh{first}")))
            for first, text in SH_BLOCKS}


@pytest.mark.parametrize("first_line", [first for first, _ in SH_BLOCKS],
                         ids=[f"line{first}" for first, _ in SH_BLOCKS])
def test_sh_block_runs_in_a_fresh_folder(sh_runs, first_line):
    assert sh_runs[first_line].failure is None, sh_runs[first_line].failure


def test_sh_blocks_run_in_order_in_one_folder(sh_runs, tmp_path):
    # Pasted in order into one folder, a block meets the files earlier blocks wrote. Only a
    # command that writes such a file can behave differently there ("file exists"), so each
    # of those runs again in its block's folder as it was before the command, with the earlier
    # block's file in place.
    written_before: dict[str, Ran] = {}
    for first, _ in SH_BLOCKS:
        for ran in sh_runs[first].commands:
            clashes = [name for name in ran.written if name in written_before]
            if clashes:
                folder = tmp_path / f"line{ran.line}"
                shutil.copytree(ran.folder, folder)
                for name in ran.created:
                    (folder / name).unlink()
                for name in clashes:
                    shutil.copyfile(written_before[name].folder / name, folder / name)
                failure = run_command(ran.line, ran.command, folder)
                assert failure is None, (
                    f"{failure}\nafter README.md:{written_before[clashes[0]].line} "
                    f"wrote {clashes[0]}")
        for ran in sh_runs[first].commands:
            written_before.update(dict.fromkeys(ran.written, ran))
    assert written_before, "the README's commands wrote no file"


_PYTHON_DRIVER = """
import json, sys
with open(sys.argv[1], encoding="utf-8") as blocks:
    blocks = json.load(blocks)
namespace = {"__name__": "__main__"}
for line, source in blocks:
    exec(compile("\\n" * (line - 1) + source, "README.md", "exec"), namespace)
"""


def test_python_blocks_run_in_order_without_warnings(tmp_path):
    folder = fresh_folder(tmp_path / "python")
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps(PY_BLOCKS), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", _PYTHON_DRIVER, str(blocks)],
        cwd=folder, env=cli_environment(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
