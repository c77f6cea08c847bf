"""Path variables kept inside their folder, and the disk lanes recordings write through."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from srv.app.diskio import TEMP_SUFFIX, DiskClosed, DiskPool, LaneFull, remove_quietly, sweep_temp, write_atomic
from srv.app.paths import UnsafePath, expand, place_under, safe_name


def test_srs_variables_expand_from_local_time_and_the_stream() -> None:
    now = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1)) + 0.089
    out = expand("[vhost]/[app]/[stream]-[2006][01][02]T[15][04][05].[999]-[timestamp]-[seq]-[duration].ts",
                 vhost="v", app="live", stream="cam", seq=12, duration_ms=4004, now=now)
    assert out == f"v/live/cam-20260304T050607.089-{int(now * 1000)}-12-4004.ts"


def test_unknown_or_unset_variables_stay_as_written() -> None:
    assert expand("[app]/[stream]-[seq].ts", vhost="v", app="a", stream="s") == "a/s-[seq].ts"


@pytest.mark.parametrize("name, safe", [
    ("../../etc/passwd", "_/_/etc/passwd"), ("/abs", "abs"), ("a\\..\\b", "a_.._b"), ("x\x00y", "x_y"),
    ("", "_"), ("./.", "_"), ("live/sub", "live/sub"),
])
def test_client_names_never_climb_out_of_the_folder(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_place_under_refuses_a_path_that_leaves_the_root(tmp_path: Path) -> None:
    root = str(tmp_path / "html")
    assert place_under(root, "live/a.ts") == os.path.join(root, "live", "a.ts")
    assert place_under(root, "/live/a.ts") == os.path.join(root, "live", "a.ts")
    with pytest.raises(UnsafePath):
        place_under(root, "../html2/a.ts")
    for stream in ("../../x", "..", "/etc/x"):
        rel = expand("[app]/[stream].m3u8", vhost="v", app="..", stream=stream)
        assert place_under(root, rel).startswith(root + os.sep)


def test_write_atomic_leaves_either_the_old_or_the_new_file(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "b.m3u8")
    assert write_atomic(path, b"one") == 3
    assert write_atomic(path, [b"tw", b"o!"]) == 4
    assert Path(path).read_bytes() == b"two!"
    assert sorted(os.listdir(tmp_path / "a")) == ["b.m3u8"]


def test_write_atomic_that_fails_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = str(tmp_path / "b.ts")
    write_atomic(path, b"old")

    def broken() -> list[bytes]:
        yield b"new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, broken())
    assert Path(path).read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["b.ts"]


def test_sweep_removes_only_temp_files(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "s-1.ts").write_bytes(b"x")
    (tmp_path / "live" / f"s-2.ts{TEMP_SUFFIX}").write_bytes(b"x")
    (tmp_path / f"s.m3u8{TEMP_SUFFIX}").write_bytes(b"x")
    assert sweep_temp(str(tmp_path)) == sorted([str(tmp_path / "live" / f"s-2.ts{TEMP_SUFFIX}"),
                                                str(tmp_path / f"s.m3u8{TEMP_SUFFIX}")])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["s-1.ts"]
    assert remove_quietly(str(tmp_path / "live" / "s-1.ts")) and not remove_quietly(str(tmp_path / "gone"))


def test_a_lane_runs_jobs_in_order_off_the_loop_and_reports_errors() -> None:
    async def main() -> None:
        pool = DiskPool(threads=3)
        lane = pool.lane("live/s", max_pending=100)
        seen: list[int] = []
        loop_thread = threading.get_ident()
        threads: set[int] = set()

        def job(i: int) -> int:
            threads.add(threading.get_ident())
            time.sleep(0.002 if i % 2 else 0)
            seen.append(i)
            return i * 2

        futures = [lane.submit(lambda i=i: job(i)) for i in range(20)]
        failed = lane.submit(lambda: (_ for _ in ()).throw(OSError(28, "full")))
        assert await asyncio.gather(*futures) == [i * 2 for i in range(20)]
        with pytest.raises(OSError, match="full"):
            await failed
        assert seen == list(range(20)) and loop_thread not in threads
        await lane.drain()
        assert lane.pending == 0
        pool.close()

    asyncio.run(main())


def test_a_lane_that_the_disk_cannot_keep_up_with_says_so() -> None:
    async def main() -> None:
        pool = DiskPool(threads=1)
        lane = pool.lane("slow", max_pending=3)
        gate = threading.Event()
        futures = [lane.submit(gate.wait) for _ in range(3)]
        with pytest.raises(LaneFull, match="slow: 3 file jobs waiting"):
            lane.submit(lambda: None)
        gate.set()
        await asyncio.gather(*futures)
        await lane.drain()
        lane.submit(lambda: None)
        await lane.drain()
        pool.close()

    asyncio.run(main())


def test_a_job_after_the_pool_closed_fails_in_its_future_not_in_the_loop(tmp_path: Path) -> None:
    """A recording's delayed deletion that comes due while the worker stops: the job is refused
    through its future (the writer's error path), not raised out of the timer callback."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        raised: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: raised.append(context))
        pool = DiskPool(threads=1)
        lane = pool.lane("live/s")
        pool.close()
        target = tmp_path / "seg.ts"
        target.write_bytes(b"x")
        got: list[asyncio.Future[None]] = []
        loop.call_soon(lambda: got.append(lane.submit(lambda: remove_quietly(str(target)))))
        await asyncio.sleep(0.01)
        with pytest.raises(DiskClosed):
            await got[0]
        assert target.exists() and not raised and lane.pending == 0

    asyncio.run(main())
