"""Ctrl-C that cannot be lost (zoo.interrupt): an interrupt a library swallows still ends the
command with its one line and exit 130, and a process stuck after an interrupt still leaves."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from hub_server import MODEL, RawServer

# A child that runs the real `zoo` entry point after setting things up in-process.
PRELUDE = "import os, signal, sys, threading, time; sys.argv[0] = 'zoo'\n"


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + code, *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(180, func_only=True)
def test_an_interrupt_the_exporter_swallows_still_stops_the_build(tmp_path):
    """PyTorch's ONNX exporter reports a Ctrl-C during its capture as a failed strategy and tries the
    next one (a build interrupted there went on, wrote its manifest and exited 0). Here the capture
    swallows a real SIGINT, as it does, and the export then succeeds: the build still stops, with
    the one line, exit 130, and writes nothing."""
    code = (
        "import zoo.exporters.onnx_export as ex\n"
        "real = ex._export_dynamo\n"
        "def swallowing(*a, **k):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(2)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "    return real(*a, **k)\n"
        "ex._export_dynamo = swallowing\n"
        "from zoo.cli import main; main()\n")
    out = tmp_path / "artifacts"
    res = run_child(code, "build", "dense_b0", "--input-dim", "64", "--no-verify", "--no-bench", "--artifacts", str(out))
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "Error: zoo build: interrupted" and "Traceback" not in res.stderr
    assert not (out / "manifest.json").exists() and not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.timeout(120, func_only=True)
def test_a_command_stuck_after_ctrl_c_still_leaves_with_one_line(tmp_path):
    """A pull interrupted while the server stalls, in a process that something keeps alive at exit
    (a non-daemon thread that never ends, joined by the interpreter as it exits): the line is
    written once, and the watchdog ends the process with exit 130 after its grace period (1 s here)."""
    stall = lambda send, body, stop: stop.wait(60)  # noqa: E731 - a server that never answers
    code = ("from zoo import interrupt; interrupt.GRACE_S = 1.0\n"
            "threading.Thread(target=threading.Event().wait).start()\n"  # never ends, never daemon
            "sys.stderr.write('up\\n'); sys.stderr.flush()\n"
            "from zoo.cli import main; main()\n")
    with RawServer(tmp_path, {"manifest.json": stall}) as srv:
        p = subprocess.Popen([sys.executable, "-c", PRELUDE + code, "pull", MODEL, "--from", srv.url,
                              "--cache-dir", str(tmp_path / "c")], stderr=subprocess.PIPE, text=True)
        try:
            assert p.stderr.readline() == "up\n"
            deadline = time.monotonic() + 30
            while not srv.requests and time.monotonic() < deadline:  # the pull waits on the server
                time.sleep(0.05)
            assert srv.requests
            t = time.monotonic()
            p.send_signal(signal.SIGINT)
            err = p.communicate(timeout=30)[1]
            took = time.monotonic() - t
        finally:
            p.kill()
    assert p.returncode == 130 and err.strip().splitlines() == ["Error: zoo pull: interrupted"], err
    assert 1.0 <= took < 15, took


@pytest.mark.parametrize("grace, then, bound", [
    (1.0, "assert interrupt.requested(); time.sleep(60)", 15),  # the watchdog alone ends it
    (50.0, "os.kill(os.getpid(), signal.SIGINT); time.sleep(60)", 10),  # a second Ctrl-C leaves at once
], ids=["watchdog", "second_ctrl_c"])
def test_a_swallowed_ctrl_c_still_ends_the_process(grace, then, bound):
    """A Ctrl-C swallowed by code that then blocks for a minute: the watchdog ends the process after
    its grace period, or a second Ctrl-C before it; the line is written once, exit 130."""
    code = (f"from zoo import interrupt; interrupt.GRACE_S = {grace}; interrupt.install('zoo pull')\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    pass\n"
            f"{then}\n")
    t = time.monotonic()
    res = run_child(code, timeout=30)
    assert res.returncode == 130 and res.stderr == "Error: zoo pull: interrupted\n", res.stderr
    assert time.monotonic() - t < bound
