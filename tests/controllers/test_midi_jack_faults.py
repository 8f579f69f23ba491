"""MIDI over JACK never freezes livekit: closing an input while messages arrive, sending to a server that stopped or
died. Each case runs in a child process with a deadline, so a regression fails here instead of hanging the suite
(both freezes stop every Python thread of the process they happen in)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import mido
import pytest

JACK = "mido.backends.rtmidi/UNIX_JACK"

CLOSE_WHILE_RECEIVING = textwrap.dedent(
    """
    from controllers.midi import MidiInput
    received = []
    for i in range(80):
        with MidiInput(received.append, port="lk-flood", backend="jack") as midi_in:
            assert midi_in.wait_connected(5.0), "the flooding port was not opened"
            start = len(received)
            while len(received) == start:  # close only once messages are arriving
                pass
    print("closed 80 times while receiving;", len(received), "events", flush=True)
    """
)


def test_closing_an_input_while_messages_arrive_never_hangs(jack) -> None:
    stop = threading.Event()
    with mido.Backend(JACK, load=True).open_output("lk-flood", virtual=True) as flood:

        def send() -> None:
            while not stop.is_set():
                for value in range(0, 128, 8):
                    flood.send(mido.Message("control_change", control=1, value=value))
                time.sleep(0.001)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            child = subprocess.run([sys.executable, "-c", CLOSE_WHILE_RECEIVING], capture_output=True, text=True,
                                   timeout=60)  # ~3 s when it works
        except subprocess.TimeoutExpired:
            pytest.fail("closing a JACK MIDI input while messages arrive froze the process")
        finally:
            stop.set()
            sender.join(5.0)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "closed 80 times" in child.stdout


# A private server (the session's must survive): livekit echoes to a device on it, the server stops, livekit keeps
# echoing from its main thread while a heartbeat thread must keep running; the server resumes, the device catches up;
# then the server quits and livekit goes on echoing.
DEAD_SERVER = textwrap.dedent(
    """
    import logging, os, signal, subprocess, sys, threading, time
    name = sys.argv[1]
    os.environ["JACK_DEFAULT_SERVER"], os.environ["JACK_NO_START_SERVER"] = name, "1"
    server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 15
    while subprocess.run(["jack_lsp", "-s", name], capture_output=True).returncode != 0:
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            sys.exit("jackd did not start: " + server.stdout.read())
        time.sleep(0.1)
    threading.Thread(target=server.stdout.read, daemon=True).start()  # drained: a full pipe would stop jackd
    import mido
    from controllers.midi_out import MidiOutput
    from controllers.midi_ports import open_input
    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("controllers.midi_ports").addHandler(Keep())
    seen = []
    beats = [0]

    def heartbeat():
        while True:
            beats[0] += 1
            time.sleep(0.01)

    threading.Thread(target=heartbeat, daemon=True).start()
    with MidiOutput(virtual_name="lk-gate", backend="jack") as out:
        device = open_input(mido.Backend("mido.backends.rtmidi/UNIX_JACK"), "lk-gate-dev", seen.append, virtual=True)
        subprocess.run(["jack_connect", "-s", name, "RtMidiOut Client:lk-gate", "RtMidiIn Client:lk-gate-dev"],
                       check=True)
        for i in range(200):
            out.send_cc(0, 7, (i % 100) / 100)
            time.sleep(0.002)
        time.sleep(0.3)
        assert seen and seen[-1].value == round(0.99 * 127), seen[-3:]
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(0.1)
        before = beats[0]
        for i in range(20000):  # ~140 KB: RtMidi's 16 KB ring would be full long before
            out.send_cc(0, 7, (i % 128) / 127)
        out.send_cc(0, 7, 0.5)
        time.sleep(0.2)
        assert beats[0] > before, "the heartbeat thread stopped while livekit sent to a stopped server"
        print("stopped server: held", out._gate.held, "messages", flush=True)
        os.kill(server.pid, signal.SIGCONT)
        time.sleep(0.2)
        out.send_cc(0, 9, 1.0)  # any later update sends what the device missed
        time.sleep(0.3)
        latest = {m.control: m.value for m in seen}
        assert latest == {7: 64, 9: 127}, latest
        server.terminate()  # it quits (a SIGKILL would leave its slot in JACK's registry of servers taken)
        server.wait()
        for i in range(20000):
            out.send_cc(0, 7, (i % 128) / 127)
        device.close()
    print("dead server: echoed on; warnings", len(warnings), flush=True)
    """
)


def test_midi_out_to_a_stopped_or_dead_jack_server_never_freezes(jack) -> None:
    name = "lkgatetest"  # one fixed name: JACK reclaims a stale registry slot only for the same name
    try:
        child = subprocess.run([sys.executable, "-c", DEAD_SERVER, name], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-CONT", "-f", f"jackd --no-realtime -n {name}"], check=False)
        subprocess.run(["pkill", "-f", f"jackd --no-realtime -n {name}"], check=False)
        pytest.fail("sending MIDI to a stopped or dead JACK server froze the process")
    assert child.returncode == 0, child.stdout[-1000:] + child.stderr[-3000:]
    held = int(child.stdout.split("held")[1].split()[0])
    assert held > 10000, child.stdout
    assert "dead server: echoed on; warnings 2" in child.stdout, child.stdout  # once per stall, not per message


def test_the_gate_lets_nothing_out_without_a_server_and_a_budget_per_cycle_with_one(jack, monkeypatch) -> None:
    from controllers.midi_ports import JackGate

    monkeypatch.setenv("JACK_DEFAULT_SERVER", "lknoserver")
    nowhere = JackGate()
    assert not nowhere.admit(3) and not nowhere.admit(3)  # no server to watch (retried once a second, not per call)
    assert nowhere.held == 2
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack.name)
    gate = JackGate(budget_bytes=70)
    try:
        assert sum(gate.admit(3) for _ in range(100)) >= 10  # 10 CCs fit one cycle's budget at least ...
        assert gate.held > 0  # ... and 100 at once (well within one 5 ms cycle) do not
        deadline = time.monotonic() + 5.0
        while not gate.admit(3) and time.monotonic() < deadline:  # the server's next cycle opens it again
            time.sleep(0.001)
        assert time.monotonic() < deadline, "the gate stayed shut on a running server"
    finally:
        gate.close()
