"""``tickwire record``, ``replay`` and ``convert``, run as a user would (``python -m tickwire`` in
a subprocess) against the simulator on 127.0.0.1, bad input included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tickwire as tw

#: The start of a recording of format version 99 (docs/recording.md: magic, version u16 LE).
NEWER_HEADER = b"TWREC\r\n\0" + (99).to_bytes(2, "little") + bytes(64)

NAME = re.compile(r"coinapi-\d{8}T\d{6}Z\.twr")


def tickwire_cmd(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "tickwire", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _record(url: str, out: Path, *extra: str) -> Any:
    r = tickwire_cmd(
        "record", "coinapi", "--url", url, "--types", "trade", "quote", "--out", str(out), *extra
    )
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def recording(make_sim: Callable[..., Any], tmp_path: Path) -> Path:
    """A recording made by ``tickwire record`` from a simulator: about a second of trades and
    quotes."""
    sim = make_sim(rate=2_000, symbols=10)
    r = _record(sim.url, tmp_path / "rec", "--seconds", "1")
    files = [Path(line) for line in r.stdout.splitlines()]
    assert len(files) == 1
    return files[0]


def _replayed(path: Path | list[Path], **kw: Any) -> list[Any]:
    out: list[Any] = []
    with tw.replay([str(p) for p in path] if isinstance(path, list) else str(path), **kw) as s:
        for batch in s:
            out.extend(batch)
    return out


def _is_data(d: dict[str, Any]) -> bool:
    return d["type"] in ("trade", "quote")


@pytest.mark.timeout(60)
def test_record_writes_a_named_recording_and_counts(recording: Path) -> None:
    assert NAME.fullmatch(recording.name), recording.name
    msgs = _replayed(recording)
    assert sum(m.type in ("trade", "quote") for m in msgs) > 100
    assert isinstance(msgs[0], tw.Connected)


@pytest.mark.timeout(60)
def test_replay_prints_what_the_stream_would(recording: Path) -> None:
    r = tickwire_cmd("replay", str(recording))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines == [m.to_dict() for m in _replayed(recording)]
    assert sum(_is_data(d) for d in lines) > 100

    r = tickwire_cmd("replay", str(recording), "--count", "5", "--data-only")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 5
    assert all(_is_data(d) for d in lines)


@pytest.mark.timeout(60)
def test_replay_start_and_end_cut_by_recv_ns(recording: Path) -> None:
    data = [m for m in _replayed(recording) if m.type in ("trade", "quote")]
    start, end = data[len(data) // 4].recv_ns, data[len(data) // 2].recv_ns
    r = tickwire_cmd(
        "replay", str(recording), "--data-only", "--start", str(start), "--end", str(end)
    )
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert got
    assert all(start <= d["recv_ns"] <= end for d in got)
    assert [d["recv_ns"] for d in got] == [m.recv_ns for m in data if start <= m.recv_ns <= end]


@pytest.mark.timeout(60)
def test_replay_table(recording: Path) -> None:
    r = tickwire_cmd("replay", str(recording), "--table")
    assert r.returncode == 0, r.stderr
    assert "BITSTAMP" in r.stdout or "SPOT" in r.stdout


@pytest.mark.timeout(60)
def test_record_rotates_and_replay_takes_the_parts_in_order(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    sim = make_sim(rate=2_000, symbols=10)
    r = _record(sim.url, tmp_path / "rot", "--seconds", "2", "--rotate-s", "0.5")
    files = [Path(line) for line in r.stdout.splitlines()]
    assert len(files) >= 2, r.stdout
    for f in files:
        assert re.fullmatch(r"coinapi-\d{8}T\d{6}Z(\.\d+)?\.twr", f.name), f.name
    r = tickwire_cmd("replay", *map(str, files), "--data-only")
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(got) > 100
    recv = [d["recv_ns"] for d in got]
    assert recv == sorted(recv)


@pytest.mark.timeout(60)
def test_record_ends_cleanly_on_ctrl_c(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    sim = make_sim(rate=2_000, symbols=10)
    out = tmp_path / "ctrlc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickwire",
            "record",
            "coinapi",
            "--url",
            sim.url,
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        # Counters once a second: two lines mean it has been recording a while.
        seen = 0
        while seen < 2:
            line = proc.stderr.readline()
            assert line, "record ended before any counters"
            seen += "messages" in line
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    files = [Path(line) for line in stdout.splitlines()]
    assert len(files) == 1
    # Finished cleanly: it replays to its end without an error.
    assert sum(m.type == "trade" for m in _replayed(files[0])) > 0


@pytest.mark.timeout(60)
def test_convert_writes_one_parquet_table_per_type(recording: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "parquet"
    r = tickwire_cmd("convert", str(recording), "--parquet", str(out))
    assert r.returncode == 0, r.stderr
    counts = Counter(m.type for m in _replayed(recording))
    assert sorted(p.name for p in out.iterdir()) == ["quote.parquet", "trade.parquet"]
    trades = pq.read_table(out / "trade.parquet")
    assert trades.num_rows == counts["trade"]
    assert {"symbol_id", "price", "size", "recv_ns"} <= set(trades.column_names)
    assert pq.read_table(out / "quote.parquet").num_rows == counts["quote"]


@pytest.mark.timeout(60)
def test_convert_without_pyarrow_is_a_one_line_usage_error(recording: Path, tmp_path: Path) -> None:
    # A pyarrow that cannot be imported, ahead of the real one on the path.
    fake = tmp_path / "nopyarrow" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pyarrow is not installed')\n")
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    r = tickwire_cmd("convert", str(recording), "--parquet", str(tmp_path / "o"), env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "pyarrow" in r.stderr
    assert "tickwire[parquet]" in r.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["replay", "convert"])
def test_bad_files(command: str, recording: Path, tmp_path: Path) -> None:
    extra = ["--parquet", str(tmp_path / "o")] if command == "convert" else []

    r = tickwire_cmd(command, str(tmp_path / "missing.twr"), *extra)
    assert r.returncode == 2
    assert "no such file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    newer = tmp_path / "newer.twr"
    newer.write_bytes(NEWER_HEADER)
    r = tickwire_cmd(command, str(newer), *extra)
    assert r.returncode == 2
    assert "version 99" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    # Damage in the middle: what came before is replayed, then an error naming the offset.
    data = bytearray(recording.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    damaged = tmp_path / "damaged.twr"
    damaged.write_bytes(bytes(data))
    r = tickwire_cmd(command, str(damaged), *extra)
    assert r.returncode == 1
    assert re.search(r"byte \d+", r.stderr), r.stderr


def test_record_usage_errors(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    r = tickwire_cmd(
        "record", "coinapi", "--url", "ws://127.0.0.1:9/v1/", "--out", str(not_a_dir / "sub")
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    r = tickwire_cmd("record", "coinapi", "--url", "ws://127.0.0.1:9/v1/")
    assert r.returncode == 2
    assert "--out" in r.stderr
    r = tickwire_cmd("replay", "x.twr", "--speed", "0")
    assert r.returncode == 2


@pytest.mark.timeout(60)
def test_record_moment_prices(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    sim = make_sim(protocol="moment", rate=2_000)
    r = tickwire_cmd(
        "record",
        "moment",
        "prices",
        "--url",
        sim.url_for("prices"),
        "--all",
        "--out",
        str(tmp_path),
        "--seconds",
        "1",
    )
    assert r.returncode == 0, r.stderr
    (path,) = (Path(line) for line in r.stdout.splitlines())
    assert re.fullmatch(r"moment-\d{8}T\d{6}Z\.twr", path.name), path.name
    assert sum(m.type == "price_update" for m in _replayed(path)) > 0


def test_a_globbed_rotation_replays_in_part_order() -> None:
    from tickwire._recording_cli import _parts_in_order

    given = ["a.twr", "x.0.twr", "x.10.twr", "x.2.twr", "y.1.twr", "y.0.twr", "b.twr"]
    assert _parts_in_order(given) == [
        "a.twr",
        "x.0.twr",
        "x.2.twr",
        "x.10.twr",
        "y.0.twr",
        "y.1.twr",
        "b.twr",
    ]


@pytest.mark.timeout(60)
def test_sim_serves_a_recording_to_another_process(recording: Path) -> None:
    with tw.replay(str(recording), keep_raw=True) as replayed:
        recorded = [m.raw for batch in replayed for m in batch if m.type in ("trade", "quote")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwire", "sim", "--replay", str(recording)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"coinapi (ws://127\.0\.0\.1:\d+/v1/)\n", line)
        assert m, line
        feed = tw.CoinAPI(url=m.group(1), data_types=["trade"])
        with tw.connect(feed, keep_raw=True, reconnect=None) as stream:
            served = [x.raw for batch in stream for x in batch if x.type in ("trade", "quote")]
        assert served == recorded
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "1 connections" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    r = tickwire_cmd("sim", "--speed", "2")
    assert r.returncode == 2
    assert "--replay" in r.stderr
