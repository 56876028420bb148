"""The stream layer of the event loop: frames, lines, a _Stream over a pair
of fds, and the worker.  Real pipes and a real loop; frame tables live in
test_fixtures/frame_cases.json."""
import binascii
import os
import threading

import pytest

import procwrap
from conftest import WAIT, load_table

FRAMES = load_table("frame_cases.json")


@pytest.mark.parametrize("case", FRAMES, ids=[c["id"] for c in FRAMES])
def test_take_frame(case):
    buffer = binascii.unhexlify(case["buffer"])
    if case.get("error"):
        with pytest.raises(procwrap._TooLong):
            procwrap._take_frame(buffer, case["limit"])
        return
    got = procwrap._take_frame(buffer, case["limit"])
    if case["expect"] is None:
        assert got is None
    else:
        kind, payload, rest = case["expect"]
        assert got == (kind, binascii.unhexlify(payload), binascii.unhexlify(rest))


def test_frame_round_trip():
    data = procwrap._frame(3, b"x" * 70000) + procwrap._frame(255, b"")
    kind, payload, rest = procwrap._take_frame(data, 1 << 20)
    assert (kind, payload) == (3, b"x" * 70000)
    assert procwrap._take_frame(rest, 0) == (255, b"", b"")


@pytest.mark.parametrize("buffer, limit, expect", [
    (b"", 8, None), (b"abc", 8, None), (b"abc\n", 8, (b"abc", b"")),
    (b"a\nb\n", 8, (b"a", b"b\n")), (b"12345678\n", 8, (b"12345678", b"")),
    (b"\r\n\r\nx", 8, (b"", b"x"))])
def test_take_until(buffer, limit, expect):
    separator = b"\r\n\r\n" if buffer.startswith(b"\r") else b"\n"
    assert procwrap._take_until(buffer, separator, limit) == expect


def test_take_until_refuses_a_line_over_its_cap():
    with pytest.raises(procwrap._TooLong):
        procwrap._take_until(b"123456789", b"\n", 8)


class _Echo(procwrap._Stream):
    """Frames in, the same frames back with their kind + 1: a duplex channel."""
    duplex = True
    eof = False

    def on_data(self):
        frame = procwrap._take_frame(self.buffer, 1 << 20)
        if frame is None:
            return False
        kind, payload, self.buffer = frame
        self.queue(procwrap._frame(kind + 1, payload))
        return True

    def on_eof(self):
        self.eof = True
        procwrap._Stream.on_eof(self)


def test_a_stream_over_a_pair_of_fds_speaks_frames_with_back_pressure():
    """Two pipes, as ssh's stdin and stdout would be: 300 frames of 64 KiB
    each way, more than any pipe holds, so writes wait for room and reads
    go on meanwhile (duplex); every frame comes back whole and in order."""
    loop = procwrap._Loop()
    to_stream_r, to_stream_w = os.pipe()
    from_stream_r, from_stream_w = os.pipe()
    stream = _Echo(loop, to_stream_r, from_stream_w)
    frames = [procwrap._frame(i % 200, os.urandom(65536)) for i in range(300)]
    got, received = [], [b""]

    def feed():
        with os.fdopen(to_stream_w, "wb") as pipe:
            for frame in frames:
                pipe.write(frame)

    def drain():
        with os.fdopen(from_stream_r, "rb") as pipe:
            while True:
                data = pipe.read(65536)
                if not data:
                    return
                received[0] += data
                while True:
                    frame = procwrap._take_frame(received[0], 1 << 20)
                    if frame is None:
                        break
                    kind, payload, received[0] = frame
                    got.append((kind, payload))
    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for thread in threads:
        thread.start()
    deadline = loop.call_later(WAIT, setattr, loop, "stopped", True)
    while not stream.closed and not loop.stopped:
        loop.run_once()
    deadline.cancel()
    for thread in threads:
        thread.join(WAIT)
    loop.close()
    assert stream.eof, "the stream never saw the writer close"
    assert len(got) == len(frames)
    for (kind, payload), frame in zip(got, frames):
        assert (kind - 1, payload) == procwrap._take_frame(frame, 1 << 20)[:2]


def test_the_worker_runs_jobs_one_at_a_time_in_order_and_reports_in_the_loop():
    loop = procwrap._Loop()
    running, overlaps, done = [0], [], []
    loop_thread = threading.current_thread()

    def job(index):
        running[0] += 1
        overlaps.append(running[0])
        running[0] -= 1
        if index == 2:
            raise OSError("job 2 fails")
        return index * 10

    def report(result, error):
        assert threading.current_thread() is loop_thread
        done.append((result, str(error) if error else None))
        if len(done) == 4:
            loop.stopped = True
    for index in range(4):
        loop.run_in_worker(lambda index=index: job(index), report)
    deadline = loop.call_later(WAIT, setattr, loop, "stopped", True)
    loop.run()
    deadline.cancel()
    loop.close()
    assert done == [(0, None), (10, None), (None, "job 2 fails"), (30, None)]
    assert set(overlaps) == {1}
