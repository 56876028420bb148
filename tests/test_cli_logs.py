"""Captured output: nothing lost, nothing merged, order kept, long lines split, no stall."""
import re
import signal

import pytest

from conftest import PYTHON, clean_environ, in_a_terminal, lines_of, records, run, write_config

# A child that writes `n` numbered lines of `size` bytes to stdout and stderr in
# big, unaligned chunks, so lines straddle reads.
WRITER = r'''
import os, sys
n, size, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
buf = []
for i in range(n):
    line = ("%s-%d " % (tag, i)).ljust(size - 1, "x") + "\n"
    buf.append(line)
    if len(buf) == 97:
        os.write(1, "".join(buf).encode()); os.write(2, "".join(buf).encode()); buf = []
os.write(1, "".join(buf).encode()); os.write(2, "".join(buf).encode())
'''


def test_every_line_of_every_child_once_in_order(tmp_path):
    n = 20000
    config = write_config(tmp_path, {"processes": [
        {"name": name, "command": [PYTHON, "-c", WRITER, str(n), "100", name],
         "restartPolicy": "Never"} for name in ("a", "b", "c")]})
    result = run("-c", config)
    assert result.returncode == 0
    for name in ("a", "b", "c"):
        for stream in ("stdout", "stderr"):
            got = lines_of(result.stdout, name, stream)
            assert len(got) == n
            assert [int(line.split()[0].split("-")[1]) for line in got] == list(range(n))
            assert all(len(line) == 99 for line in got)     # never merged or cut


def test_last_line_without_newline_is_emitted(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "p", "command": ["printf", "one\\ntwo"], "restartPolicy": "Never"}]})
    result = run("-c", config)
    assert lines_of(result.stdout, "p") == ["one", "two"]


def test_output_comes_before_the_exit_event(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "p", "command": ["sh", "-c", "seq 1 500; exit 3"], "restartPolicy": "Never"}]})
    result = run("-c", config)
    kinds = [(r.get("process"), r.get("event")) for r in records(result.stdout)]
    assert kinds.index(("procwrap", "exited")) > max(
        i for i, k in enumerate(kinds) if k[0] == "p")


@pytest.mark.parametrize("fmt", ["json", "logfmt", "text"])
def test_long_lines_are_split_and_marked(tmp_path, fmt):
    script = "import sys; sys.stdout.write('a' * 250 + '\\n' + 'b' * 90 + '\\n' + 'c' * 130)"
    config = write_config(tmp_path, {"logs": {"format": fmt, "maxLineBytes": 100},
                                     "processes": [{"name": "p", "command": [PYTHON, "-c", script],
                                                    "restartPolicy": "Never"}]})
    result = run("-c", config)
    out = result.stdout
    if fmt == "json":
        got = [(r["message"], r.get("partial", False)) for r in records(out)
               if r.get("process") == "p"]
        assert got == [("a" * 100, True), ("a" * 100, True), ("a" * 50, False),
                       ("b" * 90, False), ("c" * 100, True), ("c" * 30, False)]
    elif fmt == "logfmt":
        lines = [line for line in out.splitlines() if "process=p " in line]
        assert ["partial=true" in line for line in lines] == [True, True, False, False, True, False]
        assert lines[0].endswith('msg="%s"' % ("a" * 100))
    else:
        lines = [line for line in out.splitlines() if line.startswith("p ")]
        # Names are padded to the longest, 'procwrap' here.
        assert lines == ["p        + " + "a" * 100, "p        + " + "a" * 100,
                         "p        | " + "a" * 50, "p        | " + "b" * 90,
                         "p        + " + "c" * 100, "p        | " + "c" * 30]


def test_split_never_cuts_a_utf8_character(tmp_path):
    script = "import sys; sys.stdout.write('é' * 120 + '\\n')"     # 240 bytes
    config = write_config(tmp_path, {"logs": {"maxLineBytes": 101}, "processes": [
        {"name": "p", "command": [PYTHON, "-c", script], "restartPolicy": "Never"}]})
    result = run("-c", config)
    pieces = lines_of(result.stdout, "p")
    assert "".join(pieces) == "é" * 120
    assert "\ufffd" not in "".join(pieces)


def test_escaping_in_json_and_logfmt(tmp_path):
    text = 'quote " back \\ tab \t bell \x07 done'
    script = "import sys; sys.stdout.write(%r + '\\n')" % text
    entry = {"name": "p", "command": [PYTHON, "-c", script], "restartPolicy": "Never"}
    as_json = run("-c", write_config(tmp_path, {"processes": [entry]}))
    assert lines_of(as_json.stdout, "p") == [text]
    as_logfmt = run("-c", write_config(tmp_path, {"processes": [entry]}), "--log-format",
                    "logfmt")
    line = [line for line in as_logfmt.stdout.splitlines() if "process=p " in line][0]
    assert line.endswith('msg="quote \\" back \\\\ tab \\t bell \\u0007 done"')


@pytest.mark.parametrize("fmt", ["json", "logfmt", "text"])
def test_invalid_utf8_becomes_replacement_characters(tmp_path, fmt):
    script = "import os; os.write(1, b'ok \\xff\\xfe end \\xc3\\xa9\\n')"
    config = write_config(tmp_path, {"logs": {"format": fmt}, "processes": [
        {"name": "p", "command": [PYTHON, "-c", script], "restartPolicy": "Never"}]})
    out = run("-c", config).stdout
    if fmt == "json":
        assert lines_of(out, "p") == ["ok \ufffd\ufffd end \u00e9"]
    elif fmt == "logfmt":
        assert [line for line in out.splitlines() if "process=p " in line][0].endswith(
            'msg="ok \\ufffd\\ufffd end \u00e9"')      # go-logfmt's escape of U+FFFD
    else:
        assert "p        | ok \ufffd\ufffd end \u00e9\n" in out


def test_merge_json_lines(tmp_path):
    script = ("print('{\"level\": \"warn\", \"msg\": \"disk\", \"process\": \"spoof\"}'); "
              "print('{not json}'); print('plain')")
    config = write_config(tmp_path, {"logs": {"mergeJson": True}, "processes": [
        {"name": "p", "command": [PYTHON, "-c", script], "restartPolicy": "Never",
         "labels": {"team": "x"}}]})
    got = [r for r in records(run("-c", config).stdout) if r.get("stream") == "stdout"]
    assert got[0]["level"] == "warn" and got[0]["msg"] == "disk"
    assert got[0]["process"] == "p" and got[0]["team"] == "x" and "message" not in got[0]
    assert got[1]["message"] == "{not json}" and got[2]["message"] == "plain"


def test_text_format_without_tty_has_no_colour(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "web", "command": ["echo", "hi"], "restartPolicy": "Never"}]})
    result = run("-c", config, "--log-format", "text")
    assert "web      | hi\n" in result.stdout
    assert "\x1b[" not in result.stdout


def test_flooding_child_does_not_stall_the_others(tmp_path, background):
    # `flood` writes without end; `tick` must still get each line out promptly.
    config = write_config(tmp_path, {"processes": [
        {"name": "flood", "command": ["yes", "flood flood flood flood"]},
        {"name": "tick", "command": [PYTHON, "-u", "-c",
                                     "import time\nfor i in range(5):\n print('tick', i)\n"
                                     " time.sleep(0.05)\n"], "restartPolicy": "Never"}]})
    bg = background("-c", config)
    bg.expect('"message":"tick 4"')
    rss_kb = int([line for line in open("/proc/%d/status" % bg.pid) if line.startswith("VmRSS")][0]
                 .split()[1])
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    assert rss_kb < 64 * 1024, "procwrap grew to %d KiB while a child flooded" % rss_kb


def test_text_format_is_coloured_on_a_tty(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "web", "command": ["echo", "hi"], "restartPolicy": "Never"}]})
    status, text = in_a_terminal(["-c", config, "--log-format", "text"])
    assert status == 0
    assert "\x1b[36mweb      |\x1b[0m hi" in text


def test_text_in_a_terminal_colour_per_process_stderr_marked_names_padded(tmp_path):
    config = write_config(tmp_path, {"logs": {"format": "text"}, "processes": [
        {"name": "a", "command": ["sh", "-c", "echo out; sleep 0.1; echo err >&2"],
         "restartPolicy": "Never"},
        {"name": "longer_name", "command": ["sh", "-c", "sleep 0.3; echo hi; exit 3"],
         "restartPolicy": "OnFailure", "backoff": {"initial": 0.01, "limit": 1}}]})
    text = in_a_terminal(["-c", config])[1]
    out = re.search(r"\x1b\[(\d+)ma           \|\x1b\[0m out\n", text)
    err = re.search(r"\x1b\[(\d+)ma           !\x1b\[0m err\n", text)
    other = re.search(r"\x1b\[(\d+)mlonger_name \|\x1b\[0m hi\n", text)
    assert out and err and other, text
    assert out.group(1) == err.group(1) != other.group(1)
    assert "\x1b[1mprocwrap    |\x1b[0m a started" in text
    # procwrap's own errors stand out: a red word.
    assert ("\x1b[1mprocwrap    |\x1b[0m \x1b[31merror: \x1b[0mlonger_name: giving up after "
            "1 restart") in text


@pytest.mark.parametrize("terminal, env, flag, coloured", [
    (True, {"NO_COLOR": "1"}, None, False),
    (True, {"NO_COLOR": ""}, None, True),           # empty: not set (no-color.org)
    (True, {"NO_COLOR": "1"}, "always", True),      # the command line wins
    (False, {"FORCE_COLOR": "1"}, None, True),
    (False, {"FORCE_COLOR": "0"}, None, False),
    (True, {"FORCE_COLOR": "1"}, "never", False),
    (False, {}, "always", True),
])
def test_colour_choice(tmp_path, terminal, env, flag, coloured):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": ["echo", "x"], "restartPolicy": "Never"}]})
    args = ["-c", config, "--log-format", "text"] + (["--color", flag] if flag else [])
    if terminal:
        text = in_a_terminal(args, clean_environ(**env))[1]
    else:
        text = run(*args, env=clean_environ(**env)).stdout
    assert ("\x1b[" in text) == coloured, text


def test_timestamps_labels_and_the_plain_text_without_a_terminal(tmp_path):
    config = write_config(tmp_path, {"logs": {"format": "text"}, "processes": [
        {"name": "app", "command": ["sh", "-c", "echo one; echo two >&2"],
         "restartPolicy": "Never", "labels": {"tier": "front", "zone": "b"}}]})
    result = run("-c", config, "--log-timestamps", "--log-labels")
    lines = result.stdout.splitlines()
    assert all(re.match(r"^\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert [line[9:] for line in lines if "tier=" in line] == [
        "app tier=front zone=b | one", "app tier=front zone=b ! two"] or \
        [line[9:] for line in lines if "tier=" in line] == [
        "app tier=front zone=b ! two", "app tier=front zone=b | one"]
    assert "\x1b[" not in result.stdout
    # Names are padded to the longest: here app's, with its labels.
    assert "procwrap%s | procwrap " % (" " * 13) in result.stdout
