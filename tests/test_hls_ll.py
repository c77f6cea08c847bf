"""Low-Latency HLS, the writer end to end: a real server, ffmpeg publishing with a 1 s GOP,
`hls_part 0.2`; the playlists as the HTTP server serves them, read with the `m3u8` package
(which knows the LL-HLS tags) every ~50 ms, and the part files read with ffprobe."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import m3u8
import pytest
from conftest import Clients, Server, codecs, ffprobe
from media_tools import ffprobe_packets
from test_hls import decode_errors, fetch, publish_args

pytestmark = pytest.mark.timeout(180)

PART = 0.2


def ll_vhost(tmp_path: Path, ll: str = "on") -> str:
    return (f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_fragment 1; hls_window 20; hls_path {tmp_path / 'srs'}; "
            f"hls_dispose 0; hls_ctx off; hls_use_fmp4 on; hls_ll {ll}; hls_part {PART}; }} }}\n")


def start_ll(srs_server: Callable[..., Server], tmp_path: Path) -> Server:
    return srs_server(ll_vhost(tmp_path), workers=1, http=True)


def served(s: Server) -> tuple[str, m3u8.M3U8] | None:
    status, body = fetch(f"http://127.0.0.1:{s.http_port}/live/s.m3u8")
    return (body.decode(), m3u8.loads(body.decode())) if status == 200 else None


def complete(p: m3u8.M3U8) -> list[m3u8.Segment]:
    """The segments with an EXTINF (the one under way has parts only)."""
    return [seg for seg in p.segments if seg.uri]


def watch(s: Server, until: Callable[[m3u8.M3U8], bool], timeout: float = 40) -> list[tuple[str, m3u8.M3U8]]:
    """Every playlist version read, polling every ~50 ms, until `until` holds."""
    seen: list[tuple[str, m3u8.M3U8]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = served(s)
        if got is not None and (not seen or got[0] != seen[-1][0]):
            seen.append(got)
            if until(got[1]):
                return seen
        time.sleep(0.05)
    raise AssertionError(f"the playlist never got there: {seen[-1][0] if seen else None}")


def listed_parts(p: m3u8.M3U8) -> list[tuple[int, int, m3u8.PartialSegment]]:
    """(msn, part index, part) of every EXT-X-PART in `p`."""
    out = []
    for i, seg in enumerate(p.segments):
        for k, part in enumerate(seg.parts):
            out.append((p.media_sequence + i, k, part))
    return out


def check_version(p: m3u8.M3U8) -> None:
    """What every LL playlist version must say (RFC 8216bis, Apple's LL-HLS rules)."""
    assert p.version >= 9
    assert p.part_inf.part_target == PART
    sc = p.server_control
    assert sc.can_block_reload == "YES"
    assert sc.part_hold_back >= 3 * PART - 1e-9
    assert sc.can_skip_until >= 6 * p.target_duration
    segs = p.segments
    with_parts = [i for i, seg in enumerate(segs) if seg.parts]
    # parts only for the last few segments (3 complete ones) and the one under way
    assert with_parts and with_parts == list(range(with_parts[0], len(segs))), p.dumps()
    assert len([i for i in with_parts if segs[i].uri]) <= 3
    for seg in segs:
        if seg.uri and seg.parts:
            assert abs(sum(part.duration for part in seg.parts) - seg.duration) < 0.0015, p.dumps()
        for k, part in enumerate(seg.parts):
            assert part.duration <= PART + 0.0005, p.dumps()
            # a 1 s GOP cut into 0.2 s parts: the first part of each segment starts on a keyframe
            assert bool(part.independent) == (k == 0), p.dumps()
    if not p.is_endlist:
        last = segs[-1]
        hint = p.preload_hint
        assert hint is not None and hint.hint_type == "PART"
        msn, k, _ = listed_parts(p)[-1]
        stem = last.parts[-1].uri.rsplit(".", 2)[0] if last.parts else ""
        expected_same = f"{stem}.{k + 1}.m4s"
        assert hint.uri == expected_same or (last.uri and hint.uri.endswith(".0.m4s")), p.dumps()


def test_ll_playlists_list_parts_that_sum_to_their_segments_and_decode(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_ll(srs_server, tmp_path)
    clients.spawn(publish_args(f"{s.url}/live/s", 9), stdout=subprocess.DEVNULL)
    seen = watch(s, lambda p: p.is_endlist)
    assert len(seen) > 20, "too few playlist versions to judge"
    hints: list[str] = []
    for _, p in seen:
        check_version(p)
        if p.preload_hint is not None:
            hints.append(p.preload_hint.uri)
    # each hint names the part that is listed next
    every_part = [part.uri for _, p in seen for _, _, part in listed_parts(p)]
    for hint in hints[:-1]:
        assert hint in every_part, hint
    assert len(set(hints)) >= 10

    final = seen[-1][1]
    segments = complete(final)
    assert len(segments) >= 7 and final.preload_hint is None
    # dates follow the durations
    dates = [seg.program_date_time.timestamp() for seg in segments]  # every segment has its own
    for (a, b), seg in zip(zip(dates, dates[1:], strict=False), segments, strict=False):
        assert b > a and abs((b - a) - seg.duration) < 0.05, (dates, [x.duration for x in segments])

    folder = tmp_path / "srs" / "live"
    init = (folder / "s-init.mp4").read_bytes()
    for seg in segments[-3:]:
        parts = [(folder / part.uri).read_bytes() for part in seg.parts]
        assert b"".join(parts) == (folder / seg.uri).read_bytes()  # the segment is its parts
        joined = tmp_path / f"joined-{seg.uri}.mp4"
        joined.write_bytes(init + b"".join(parts))
        video = ffprobe_packets(joined, "v")
        assert len(video) == round(seg.duration * 25) and video[0][2], seg.uri
        assert decode_errors(str(joined)) == ""
        for part in seg.parts:  # INDEPENDENT=YES is a part whose first frame is a keyframe
            alone = tmp_path / f"part-{part.uri}.mp4"
            alone.write_bytes(init + (folder / part.uri).read_bytes())
            assert ffprobe_packets(alone, "v")[0][2] == bool(part.independent), part.uri
    assert not list(folder.glob("*.partial")) and not list(folder.glob("*.tmp"))

    # ffmpeg and ffprobe play the same playlist as plain HLS
    url = f"http://127.0.0.1:{s.http_port}/live/s.m3u8"
    found = codecs(ffprobe(url))
    assert found["video"]["codec_name"] == "h264" and found["audio"]["codec_name"] == "aac"
    assert decode_errors(url) == ""


def test_a_part_under_way_grows_in_its_partial_file_and_is_renamed_when_complete(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_ll(srs_server, tmp_path)
    clients.spawn(publish_args(f"{s.url}/live/s", 30), stdout=subprocess.DEVNULL)
    folder = tmp_path / "srs" / "live"
    # a part is written in 0.2 s: the hint read may be complete already, or grow between two
    # looks of a slowed test; the first of up to 20 hints seen growing is followed
    for _ in range(20):
        seen = watch(s, lambda p: len(complete(p)) >= 2 and p.preload_hint is not None)
        hint = seen[-1][1].preload_hint.uri
        growing = folder / (hint + ".partial")
        sizes: list[int] = []
        deadline = time.monotonic() + 5
        while not (folder / hint).exists() and time.monotonic() < deadline:
            if growing.exists():
                try:
                    sizes.append(growing.stat().st_size)
                except FileNotFoundError:
                    pass  # renamed between the two calls
            time.sleep(0.005)
        if len(set(sizes)) >= 2:
            break
    assert (folder / hint).exists() and not growing.exists()
    assert len(set(sizes)) >= 2 and sizes == sorted(sizes), sizes  # it grew, chunk by chunk
    assert (folder / hint).stat().st_size >= max(sizes)
    # once complete, the part is listed
    watch(s, lambda p: any(part.uri == hint for _, _, part in listed_parts(p)), timeout=20)


def test_a_republish_lists_a_discontinuity_and_parts_go_on(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_ll(srs_server, tmp_path)
    url = f"{s.url}/live/s"
    clients.spawn(publish_args(url, 4), stdout=subprocess.DEVNULL)
    first = watch(s, lambda p: p.is_endlist)[-1][1]
    before = len(complete(first))
    clients.spawn(publish_args(url, 5), stdout=subprocess.DEVNULL)
    seen = watch(s, lambda p: not p.is_endlist and len(complete(p)) >= before + 2)
    p = seen[-1][1]
    check_version(p)
    segs = complete(p)
    assert segs[:before] and [seg.uri for seg in segs[:before]] == [seg.uri for seg in complete(first)]
    assert segs[before].discontinuity and not any(seg.discontinuity for seg in segs[before + 1:])
    assert [bool(seg.parts) for seg in segs[before:]][-2:] == [True, True]
    assert p.preload_hint is not None
    final = watch(s, lambda p: p.is_endlist)[-1][1]
    check_version(final)
    assert decode_errors(f"http://127.0.0.1:{s.http_port}/live/s.m3u8") == ""


def test_a_reload_turns_ll_on_and_off_while_the_stream_publishes(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = srs_server(ll_vhost(tmp_path, "off"), workers=1, http=True)
    publisher = clients.spawn(publish_args(f"{s.url}/live/s", 40), stdout=subprocess.DEVNULL)
    text, plain = watch(s, lambda p: len(p.segments) >= 2)[-1]
    assert plain.version == 7 and "#EXT-X-PART" not in text and "SERVER-CONTROL" not in text
    s.write_conf(ll_vhost(tmp_path, "on"))
    s.send_signal(signal.SIGHUP)
    ll = watch(s, lambda p: p.version == 9 and not p.is_endlist and len(complete(p)) >= 2)[-1][1]
    check_version(ll)
    s.write_conf(ll_vhost(tmp_path, "off"))
    s.send_signal(signal.SIGHUP)
    text, again = watch(s, lambda p: p.version == 7 and not p.is_endlist and len(p.segments) >= 2)[-1]
    assert "#EXT-X-PART" not in text and "SERVER-CONTROL" not in text and "PRELOAD-HINT" not in text
    assert publisher.poll() is None  # the publisher never noticed
