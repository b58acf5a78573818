"""vaelab.console: output that goes quiet, instead of failing, once nobody reads it."""

import io
import os

from vaelab.console import ForgivingStream


def test_a_closed_pipe_silences_the_stream_and_the_writes_go_on():
    read, write = os.pipe()
    raw = open(write, "w", buffering=1)  # noqa: SIM115 (closed below, after the checks)
    os.close(read)  # the reader goes away, as `head -1` does: Python ignores SIGPIPE, so writes raise
    stream = ForgivingStream(raw)
    try:
        assert stream.write("a line nobody reads\n") == len("a line nobody reads\n")
        stream.flush()
        assert stream.write("and another\n") == len("and another\n")
        assert os.stat(os.devnull).st_rdev == os.fstat(raw.fileno()).st_rdev  # its descriptor is /dev/null now
    finally:
        raw.close()


def test_characters_the_stream_cannot_encode_are_escaped():
    raw = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    stream = ForgivingStream(raw)
    stream.write("runs/caf\u00e9\n")
    stream.flush()
    assert raw.buffer.getvalue() == b"runs/caf\\xe9\n"
    assert stream.encoding == "ascii"  # anything else is the stream's own
