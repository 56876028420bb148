"""procwrap.py reads top to bottom, mechanism before policy (STYLE.md, Layout):
no top-level definition uses a name defined in a later section, and Part I
(what the SSH bootstrap ships) uses nothing from Part II."""
import ast
import os

import pytest

from conftest import ROOT

BANNER = "# " + "=" * 77
PART = "# " + "#" * 77


def layout(source):
    """[(part, section, first line)] from the banners, in order."""
    lines = source.splitlines()
    found, part = [], None
    for index, line in enumerate(lines):
        if line == PART and index + 1 < len(lines) and lines[index + 1].startswith("# Part "):
            part = lines[index + 1][len("# Part "):].split(":")[0]
        # An opening banner follows a blank line (a closing one follows its text).
        if line == BANNER and index + 1 < len(lines) and lines[index + 1] != BANNER \
                and (index == 0 or not lines[index - 1].startswith("#")
                     or lines[index - 1] == PART):
            found.append((part, lines[index + 1][2:], index + 1))
    return found


def definitions(tree):
    """[(name, node)] of every top-level def, class and assignment."""
    result = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            result.append((node.name, node))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        result.append((leaf.id, node))
        elif isinstance(node, (ast.Try, ast.If)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Assign):
                    for leaf in ast.walk(inner.targets[0]):
                        if isinstance(leaf, ast.Name):
                            result.append((leaf.id, node))
                elif isinstance(inner, ast.ImportFrom):
                    result.extend((alias.asname or alias.name, node) for alias in inner.names)
    return result


def check(source):
    """The problems of `source`'s layout, one line each."""
    tree = ast.parse(source)
    sections = layout(source)
    assert sections, "no section banners"

    def place(line):
        index = max(i for i, (_, _, first) in enumerate(sections) if first <= line)
        return index, sections[index]

    where = {}
    for name, node in definitions(tree):
        if node.lineno > sections[0][2]:
            where.setdefault(name, place(node.lineno))
    problems = []
    for name, node in definitions(tree):
        if node.lineno < sections[0][2]:
            continue
        index, (part, section, _) = place(node.lineno)
        for leaf in ast.walk(node):
            if isinstance(leaf, ast.Name) and leaf.id in where and leaf.id != name:
                other, (other_part, other_section, _) = where[leaf.id]
                if other > index:
                    problems.append("%s (%s, line %d) uses %s from the later section %s"
                                    % (name, section, leaf.lineno, leaf.id, other_section))
                elif part == "I" and other_part == "II":
                    problems.append("%s (Part I) uses %s from Part II" % (name, leaf.id))
    return sorted(set(problems))


def source():
    with open(os.path.join(ROOT, "procwrap.py")) as stream:
        return stream.read()


def test_no_section_uses_a_later_one_and_part_one_stands_alone():
    problems = check(source())
    assert problems == [], "\n".join(problems)


def test_the_contents_list_the_sections_in_order():
    text = source()
    contents = text[text.index("Contents:"):text.index('"""', text.index("Contents:"))]
    contents = " ".join(contents.split())
    position = 0
    for _, section, _ in layout(text):
        found = contents.find(section, position)
        assert found >= 0, "%s is not in the Contents, or out of order" % section
        position = found + len(section)


def test_the_part_one_banner_comes_first_and_part_two_follows():
    parts = [part for part, _, _ in layout(source())]
    assert parts[0] == "I" and "II" in parts
    assert parts == sorted(parts, key=len), "Part I and Part II sections are interleaved"


def test_the_checker_finds_a_forward_use():
    """The check itself can fail: a section using a later one is reported."""
    bad = ("\n".join([PART, "# Part I: anywhere", PART, BANNER, "# A", BANNER,
                      "def f():", "    return g()", PART, "# Part II: local", PART,
                      BANNER, "# B", BANNER, "def g():", "    return 1"]) + "\n")
    problems = check(bad)
    assert any("uses g from the later section B" in p for p in problems)


def test_the_repository_holds_only_the_top_level_the_design_allows():
    """Rule 1: procwrap.py, README.md, tests/, test_fixtures/, tox.ini,
    LICENSE, pyproject.toml, .ci/run (a committed __pycache__ slipped in once)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        files = subprocess.check_output(["git", "ls-files"], cwd=root,
                                        universal_newlines=True).split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    allowed = {"procwrap.py", "README.md", "tox.ini", "LICENSE", "pyproject.toml", ".ci/run"}
    stray = [path for path in files if path not in allowed
             and not path.startswith(("tests/", "test_fixtures/"))]
    assert not stray
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]
