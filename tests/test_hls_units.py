"""The HLS writer's sans-I/O parts: playlists (RFC 8216) and where segments are cut."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import m3u8
import pytest

from srv.app import diskio, hls
from srv.app.hls_playlist import Playlist, Segment, parse, render, target_duration, too_long
from srv.app.hls_segmenter import Cut, Segmenter
from srv.conf.model import HlsConfig
from srv.media.flv import TAG_AUDIO, TAG_VIDEO, FlvTag, read_flv_file
from tests.media_tools import encode_h264_aac_flv


def make(n: int, disc: set[int] | None = None, duration: float = 2.0) -> Playlist:
    p = Playlist(target_duration(2.0))
    for i in range(n):
        p.append(Segment(i, f"s-{i}.ts", duration, discontinuity=i in (disc or set()), program_date_time=1e9 + i * 2))
    return p


def test_playlist_renders_what_a_parser_reads_and_reads_back_its_own() -> None:
    p = make(3, disc={1})
    p.ended = True
    text = render(p)
    parsed = m3u8.loads(text)
    assert parsed.version == 3 and parsed.target_duration == 2 and parsed.media_sequence == 0
    assert [s.uri for s in parsed.segments] == ["s-0.ts", "s-1.ts", "s-2.ts"]
    assert [s.discontinuity for s in parsed.segments] == [False, True, False]
    assert parsed.is_endlist and parsed.segments[0].program_date_time is not None
    back = parse(text)
    assert back is not None and render(back) == text


def test_sliding_advances_media_and_discontinuity_sequence() -> None:
    p = make(6, disc={1, 4})
    removed = p.slide(6.0)  # 12 s listed: the three oldest go
    assert [s.uri for s in removed] == ["s-0.ts", "s-1.ts", "s-2.ts"]
    assert p.media_sequence == 3 and p.discontinuity_sequence == 1
    parsed = m3u8.loads(render(p))
    assert parsed.media_sequence == 3 and parsed.discontinuity_sequence == 1
    assert p.slide(0.1) and len(p.segments) == 1  # the newest always stays
    assert p.discontinuity_sequence == 2


def test_fmp4_playlists_are_version_7_with_a_map_per_init() -> None:
    p = Playlist(2, version=7)
    p.append(Segment(0, "s-0.m4s", 2.0, map_uri="s-init.mp4"))
    p.append(Segment(1, "s-1.m4s", 2.0, map_uri="s-init.mp4"))
    p.append(Segment(2, "s-2.m4s", 2.0, discontinuity=True, map_uri="s-init-2.mp4"))
    text = render(p)
    assert text.count("#EXT-X-MAP") == 2 and "#EXT-X-VERSION:7" in text
    parsed = m3u8.loads(text)
    assert [s.init_section.uri for s in parsed.segments] == ["s-init.mp4", "s-init.mp4", "s-init-2.mp4"]


def test_target_duration_and_the_rounding_rule() -> None:
    assert target_duration(2.0) == 2 and target_duration(2.1) == 3 and target_duration(0.3) == 1
    assert not too_long(2.49, 2) and too_long(2.5, 2)


# ---- cutting --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tags(tmp_path_factory: pytest.TempPathFactory) -> list[FlvTag]:
    path = encode_h264_aac_flv(tmp_path_factory.mktemp("hls") / "h264.flv", seconds=8)
    return list(read_flv_file(path))


def cut_all(tags: list[FlvTag], hls: HlsConfig, fmp4: bool = False) -> tuple[Segmenter, list[Cut]]:
    seg = Segmenter(hls, fmp4)
    cuts: list[Cut] = []
    for t in tags:
        cuts += seg.push(t.tag_type, t.timestamp, t.payload, 0.0)
    last = seg.finish()
    if last is not None:
        cuts.append(last)
    return seg, cuts


def is_key(t: FlvTag) -> bool:
    return t.tag_type == TAG_VIDEO and t.payload[0] >> 4 == 1 and t.payload[1] == 1


def test_segments_start_on_keyframes_and_last_the_fragment(tags: list[FlvTag]) -> None:
    _, cuts = cut_all(tags, HlsConfig(fragment=2.0))
    assert [c.duration for c in cuts[:-1]] == [2.0, 2.0, 2.0]
    assert all(c.keyframe_start for c in cuts) and not any(c.discontinuity for c in cuts)
    assert cuts[-1].duration == pytest.approx(2.0, abs=0.15)  # to the end of the audio


def test_a_cut_comes_early_rather_than_past_the_target(tags: list[FlvTag]) -> None:
    # keyframes every second; a 2.6 s fragment would wait for 3 s segments under a target of 3:
    # fine. With td_ratio 1 and fragment 1.6 (target 2), waiting for the keyframe at 2 s is
    # within the rounding; fragment 2.4 (target 3) cuts at 3 s.
    _, cuts = cut_all(tags, HlsConfig(fragment=1.6))
    assert all(not too_long(c.duration, 2) for c in cuts)
    _, cuts = cut_all(tags, HlsConfig(fragment=2.4))
    assert all(not too_long(c.duration, 3) for c in cuts)


def test_a_gop_longer_than_the_target_is_flagged(tags: list[FlvTag]) -> None:
    seg, cuts = cut_all(tags, HlsConfig(fragment=0.4))
    assert seg.long_gop and seg.gop == 1.0
    assert all(c.duration == 1.0 for c in cuts[:-1])  # one GOP each: the shortest there can be


def test_a_stream_starting_without_a_keyframe_skips_to_the_first_one(tags: list[FlvTag]) -> None:
    first_key = next(i for i, t in enumerate(tags) if is_key(t))
    rest = tags[:first_key] + tags[first_key + 1:]
    seg, cuts = cut_all(rest, HlsConfig(fragment=2.0))
    assert seg.skipped > 0 and cuts[0].keyframe_start and cuts[0].start == 1000


def test_wait_keyframe_off_cuts_at_the_fragment_on_any_frame(tags: list[FlvTag]) -> None:
    _, cuts = cut_all(tags, HlsConfig(fragment=1.5, wait_keyframe=False))
    assert [c.duration for c in cuts[:3]] == [1.52, 1.52, 1.52]  # the first video frame past 1.5 s
    assert not cuts[1].keyframe_start


def test_audio_only_is_cut_at_the_aof_ratio(tags: list[FlvTag]) -> None:
    audio = [t for t in tags if t.tag_type == TAG_AUDIO]
    _, cuts = cut_all(audio, HlsConfig(fragment=1.0, aof_ratio=2.1))
    assert len(cuts) == 4 and all(2.1 <= c.duration < 2.2 for c in cuts[:-1])
    assert not any(c.has_video for c in cuts)


def shifted(tags: list[FlvTag], f: object) -> list[FlvTag]:
    return [dataclasses.replace(t, timestamp=f(t.timestamp)) for t in tags]  # type: ignore[operator]


def test_timestamps_wrapping_past_32_bits_go_on_without_a_discontinuity(tags: list[FlvTag]) -> None:
    base = (1 << 32) - 3000
    _, cuts = cut_all(shifted(tags, lambda ts: (ts + base) & 0xFFFFFFFF), HlsConfig(fragment=2.0))
    assert [c.duration for c in cuts[:-1]] == [2.0, 2.0, 2.0] and not any(c.discontinuity for c in cuts)


def test_timestamps_jumping_back_start_a_discontinuity_and_stay_monotonic(tags: list[FlvTag]) -> None:
    _, cuts = cut_all(shifted(tags, lambda ts: ts if ts < 3000 else ts - 2500), HlsConfig(fragment=2.0))
    assert any(c.discontinuity for c in cuts)
    assert all(c.duration > 0 for c in cuts)
    assert all(b.start > a.start for a, b in zip(cuts, cuts[1:], strict=False))


def test_fmp4_segments_carry_their_init_when_the_tracks_change(tags: list[FlvTag]) -> None:
    _, cuts = cut_all(tags, HlsConfig(fragment=2.0), fmp4=True)
    assert cuts[0].init is not None and cuts[0].init[4:8] == b"ftyp"
    assert all(c.init is None for c in cuts[1:]) and all(c.data[4:8] == b"moof" for c in cuts)


def test_av1_in_a_ts_stream_goes_fmp4_with_a_reason(tmp_path: Path) -> None:
    from tests.media_tools import av1_enhanced_tags

    seg, cuts = cut_all(av1_enhanced_tags(tmp_path, seconds=2), HlsConfig(fragment=1.0))
    assert seg.fmp4 and seg.fallback and "AV1" in seg.fallback
    assert cuts and cuts[0].init is not None


def test_new_sequence_headers_cut_at_the_next_keyframe_with_a_discontinuity_and_a_new_init(
        tags: list[FlvTag]) -> None:
    at = next(i for i, t in enumerate(tags) if t.timestamp >= 2500)
    changed = tags[:at] + [FlvTag(TAG_AUDIO, tags[at].timestamp, b"\xaf\x00\x11\x88")] + tags[at:]  # 48 kHz
    _, cuts = cut_all(changed, HlsConfig(fragment=2.0), fmp4=True)
    after = [c for c in cuts if c.start > 2500]
    assert after[0].start == 3000 and after[0].discontinuity and after[0].init is not None
    assert not any(c.discontinuity for c in cuts if c.start <= 2500)
    _, ts_cuts = cut_all(changed, HlsConfig(fragment=2.0))
    assert [c.discontinuity for c in ts_cuts] == [c.discontinuity for c in cuts]


# ---- hls_dispose against a republish on another worker ---------------------------------------

def _ended_stream(folder: Path) -> tuple[str, str, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    segments = [folder / f"s-{i}.ts" for i in range(3)]
    for s in segments:
        s.write_bytes(b"\x47" * 188)
    text = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            + "".join(f"#EXTINF:2.000,\n{s.name}\n" for s in segments) + "#EXT-X-ENDLIST\n")
    (folder / "s.m3u8").write_text(text)
    return str(folder / "s.m3u8"), text, [str(s) for s in segments]


def test_a_dispose_after_a_republish_claimed_the_playlist_removes_nothing(tmp_path: Path) -> None:
    m3u8, ours, segments = _ended_stream(tmp_path / "live")
    assert hls.claim_playlist(m3u8) == ours  # the republish reads what the last publish left
    claimed = Path(m3u8).read_text()
    assert "#EXT-X-ENDLIST" not in claimed and all(Path(s).name in claimed for s in segments)
    assert hls.dispose_files(m3u8, ours, segments) is False  # the old writer sees it taken over
    assert all(Path(s).exists() for s in segments) and Path(m3u8).exists()


def test_a_dispose_before_a_republish_leaves_it_nothing_to_take_over(tmp_path: Path) -> None:
    m3u8, ours, segments = _ended_stream(tmp_path / "live")
    assert hls.dispose_files(m3u8, ours, segments) is True
    assert not any(Path(s).exists() for s in [*segments, m3u8])
    assert hls.claim_playlist(m3u8) is None  # a fresh start: no segment that is gone is listed


def test_claim_and_dispose_never_interleave(tmp_path: Path) -> None:
    """Each takes the folder's lock for its whole check-then-change: while another worker holds
    it (here: this test), a dispose waits, then finds the claim made meanwhile."""
    m3u8, ours, segments = _ended_stream(tmp_path / "live")
    result: list[bool] = []
    with diskio.folder_lock(str(tmp_path / "live")):
        t = threading.Thread(target=lambda: result.append(hls.dispose_files(m3u8, ours, segments)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and all(Path(s).exists() for s in segments)  # it waits for the lock
        # the republish's read and claim, done while the dispose waits (its lock is the one held)
        text = Path(m3u8).read_text()
        diskio.write_atomic(m3u8, text.replace("#EXT-X-ENDLIST\n", "").encode())
    t.join(10)
    assert result == [False] and all(Path(s).exists() for s in segments)
