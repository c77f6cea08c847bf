"""Low-Latency HLS, the writer's sans-I/O side: the `hls_ll`/`hls_part` directives, part names,
the delta playlist of `_HLS_skip=YES`, the part cutter and the LL playlist model."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Iterable
from pathlib import Path

import m3u8
import pytest
from conftest import SRS

from srv.app import diskio
from srv.app import hls as hls_module
from srv.app.diskio import DiskPool
from srv.app.hls import HlsWriter
from srv.app.hls_ll import PartEvent, PartListener, part_path, partial_path, render_delta, split_part
from srv.app.hls_playlist import VERSION_LL, LowLatency, Part, Playlist, Segment, parse, render
from srv.app.hls_segmenter import Chunk, Cut, Event, Opening, Segmenter
from srv.conf import ConfigErrors, load
from srv.conf.model import HlsConfig
from srv.media.flv import TAG_AUDIO, TAG_VIDEO, FlvTag, read_flv_file
from tests.media_tools import encode_h264_aac_flv, ffprobe_packets


def _load_hls(tmp_path: Path, body: str) -> tuple[HlsConfig, tuple[str, ...]]:
    path = tmp_path / "x.conf"
    path.write_text("vhost v {\n    hls {\n        enabled on;\n" + body + "    }\n}\n")
    config = load(str(path), {})
    return config.vhosts["v"].hls, config.warnings


# ---- directives -----------------------------------------------------------------------------


def test_hls_ll_and_hls_part_are_read_with_their_defaults(tmp_path: Path) -> None:
    hls, warnings = _load_hls(tmp_path, "        hls_fragment 1;\n")
    assert (hls.ll, hls.part) == (False, 0.2) and not warnings
    hls, warnings = _load_hls(tmp_path, "        hls_fragment 1;\n        hls_use_fmp4 on;\n"
                                        "        hls_ll on;\n        hls_part 0.25;\n")
    assert (hls.ll, hls.part, hls.use_fmp4) == (True, 0.25, True)
    assert not warnings


def test_hls_ll_without_fmp4_warns_once_and_writes_fmp4(tmp_path: Path) -> None:
    hls, warnings = _load_hls(tmp_path, "        hls_fragment 1;\n        hls_use_fmp4 off;\n        hls_ll on;\n")
    assert hls.use_fmp4 is True
    assert len(warnings) == 1 and "hls_ll on needs fMP4" in warnings[0]
    assert warnings[0].startswith(f"{tmp_path / 'x.conf'}:5:9: ")  # at hls_use_fmp4


@pytest.mark.parametrize("body, where, words", [
    ("        hls_ll on;\n        hls_part 0.01;\n", "5:18", 'invalid value "0.01" (expected 0.05 to 5)'),
    ("        hls_ll on;\n        hls_part 9;\n", "5:18", 'invalid value "9" (expected 0.05 to 5)'),
    ("        hls_ll on;\n        hls_part soon;\n", "5:18",
     'invalid duration "soon" (expected seconds, e.g. 30 or 0.5)'),
    ("        hls_fragment 1;\n        hls_ll on;\n        hls_part 1.5;\n", "6:9",
     "hls_part 1.5 must be shorter than hls_fragment * hls_td_ratio (1 s)"),
    ("        hls_fragment 0.2;\n        hls_ll on;\n", "5:9",
     "hls_part 0.2 must be shorter than hls_fragment * hls_td_ratio (0.2 s)"),
])
def test_a_bad_hls_part_is_an_error_at_its_file_line_col(tmp_path: Path, body: str, where: str, words: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        _load_hls(tmp_path, body)
    errors = [str(e) for e in info.value.errors]
    assert errors == [f"{tmp_path / 'x.conf'}:{where}: {words}"]


def test_t_accepts_the_ll_directives(tmp_path: Path) -> None:
    conf = tmp_path / "ll.conf"
    conf.write_text("listen 1935;\nworkers 1;\ndaemon off;\nvhost __defaultVhost__ {\n"
                    "    hls { enabled on; hls_fragment 1; hls_ll on; hls_part 0.2; }\n}\n")
    out = subprocess.run([str(SRS), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "test is successful" in out.stderr and "hls_ll on needs fMP4" in out.stderr


# ---- names ----------------------------------------------------------------------------------


def test_part_names_sit_beside_their_segment_and_read_back() -> None:
    assert part_path("live/s-12.m4s", 3) == "live/s-12.3.m4s"
    assert partial_path(part_path("live/s-12.m4s", 0)) == "live/s-12.0.m4s.partial"
    assert split_part("live/s-12.3.m4s") == ("live/s-12.m4s", 3)
    assert split_part("/a.b/s.x-7.11.m4s") == ("/a.b/s.x-7.m4s", 11)
    assert split_part("live/s-12.m4s") is None and split_part("live/s.m3u8") is None


# ---- the delta playlist ---------------------------------------------------------------------


def ll_text(segments: int, skip_until: float = 6.0, parts_from: int = 3, maps: dict[int, str] | None = None) -> str:
    maps = maps or {0: "s-init.mp4"}
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:1",
             f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL={skip_until:.3f}",
             "#EXT-X-PART-INF:PART-TARGET=0.200", "#EXT-X-MEDIA-SEQUENCE:40"]
    for i in range(segments):
        if i in maps:
            lines.append(f'#EXT-X-MAP:URI="{maps[i]}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:2026-11-30T01:00:{i:02d}.000Z")
        if i >= segments - parts_from:
            lines += [f'#EXT-X-PART:DURATION=0.200,URI="s-{i}.{k}.m4s"' + (",INDEPENDENT=YES" if not k else "")
                      for k in range(5)]
        lines += ["#EXTINF:1.000,", f"s-{i}.m4s"]
    lines += ["#EXT-X-PROGRAM-DATE-TIME:2026-11-30T01:00:59.000Z",
              f'#EXT-X-PART:DURATION=0.200,URI="s-{segments}.0.m4s",INDEPENDENT=YES',
              f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s-{segments}.1.m4s"']
    return "\n".join(lines) + "\n"


def test_the_delta_playlist_skips_what_lies_beyond_can_skip_until() -> None:
    full = ll_text(10, maps={0: "s-init.mp4", 2: "s-init-2.mp4"})
    delta = render_delta(full)
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=4" in delta
    parsed = m3u8.loads(delta)
    whole = m3u8.loads(full)
    assert parsed.media_sequence == whole.media_sequence == 40
    assert parsed.skip.skipped_segments == 4
    kept = [s.uri for s in parsed.segments if s.uri]
    assert kept == [f"s-{i}.m4s" for i in range(4, 10)]
    assert sum(s.duration for s in parsed.segments if s.uri) >= 6.0
    # the init in force is named again before the first segment kept; nothing else is lost
    assert delta.split("#EXT-X-SKIP")[1].splitlines()[1] == '#EXT-X-MAP:URI="s-init-2.mp4"'
    assert delta.split("#EXT-X-SKIP")[0] == full.split('#EXT-X-MAP')[0]
    assert delta.endswith('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s-10.1.m4s"\n')
    assert parsed.server_control.can_skip_until == 6.0 and parsed.part_inf.part_target == 0.2
    assert len(parsed.segments[-1].parts) == 1 and parsed.preload_hint.uri == "s-10.1.m4s"


def test_the_delta_playlist_is_the_playlist_when_nothing_can_be_skipped() -> None:
    assert render_delta(ll_text(6)) == ll_text(6)  # 6 s listed: all within CAN-SKIP-UNTIL
    assert render_delta(ll_text(10, skip_until=0)) == ll_text(10, skip_until=0)
    plain = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.000,\ns-0.m4s\n"
    assert render_delta(plain) == plain
    assert "SKIPPED-SEGMENTS=1" in render_delta(ll_text(7))


# ---- the part cutter ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tags(tmp_path_factory: pytest.TempPathFactory) -> list[FlvTag]:
    path = encode_h264_aac_flv(tmp_path_factory.mktemp("ll") / "h264.flv", seconds=8)
    return list(read_flv_file(path))


def cut_ll(tags: list[FlvTag], hls: HlsConfig, part: float = 0.2) -> list[Event]:
    seg = Segmenter(hls, True, part)
    events: list[Event] = []
    for t in tags:
        events += seg.push(t.tag_type, t.timestamp, t.payload, 1e9 + t.timestamp / 1000)
    return events + seg.finish_events()


def segments_of(events: list[Event]) -> list[tuple[Opening, list[Chunk], Cut]]:
    """Each segment's opening, chunks and cut, checking they come in that order."""
    out: list[tuple[Opening, list[Chunk], Cut]] = []
    opening: Opening | None = None
    chunks: list[Chunk] = []
    for e in events:
        if isinstance(e, Opening):
            assert opening is None and not chunks
            opening = e
        elif isinstance(e, Chunk):
            assert opening is not None
            chunks.append(e)
        else:
            assert opening is not None and chunks and chunks[-1].duration is not None
            out.append((opening, chunks, e))
            opening, chunks = None, []
    assert opening is None
    return out


def test_segments_are_cut_into_parts_of_at_most_the_part_target(tags: list[FlvTag]) -> None:
    segments = segments_of(cut_ll(tags, HlsConfig(fragment=1.0)))
    assert len(segments) == 8
    for opening, chunks, cut in segments:
        assert opening.start == cut.start and opening.wall == cut.wall
        ends = [c for c in chunks if c.duration is not None]
        assert [c.part for c in ends] == list(range(len(ends)))  # parts numbered from 0, in order
        assert all(c.part == e.part for c, e in zip(chunks, _owner(chunks), strict=True))
        durations = [c.duration for c in ends]
        assert all(d is not None and d <= 0.2 for d in durations) and len(ends) == 5, durations
        assert sum(d for d in durations if d) == pytest.approx(cut.duration, abs=1e-9)
        assert [c.independent for c in ends] == [True, False, False, False, False]  # 1 s GOP, 25 fps
        assert b"".join(c.data for c in chunks) == cut.data  # the segment is its chunks
        assert all(c.data[4:8] == b"moof" for c in chunks)
        assert len(chunks) >= 20  # about a chunk per video frame
    assert segments[0][0].init is not None and all(o.init is None for o, _, _ in segments[1:])
    # dates follow the media timeline, not the moment each batch was read
    assert [o.wall - segments[0][0].wall for o, _, _ in segments] == pytest.approx([float(i) for i in range(8)])


def _owner(chunks: list[Chunk]) -> list[Chunk]:
    """For each chunk, the chunk that ends its part."""
    out, pending = [], []
    for c in chunks:
        pending.append(c)
        if c.duration is not None:
            out += [c] * len(pending)
            pending = []
    return out


def test_a_part_never_passes_the_target_with_30_fps_timestamps(tags: list[FlvTag]) -> None:
    # FLV's millisecond timestamps at 30 fps step 33/34 ms: parts end before the frame that
    # would pass 0.2 s, and still sum to their segment
    video = [t for t in tags if t.tag_type == TAG_VIDEO]
    retimed = [dataclasses.replace(t, timestamp=(i * 1000) // 30) for i, t in enumerate(video)]
    for _, chunks, cut in segments_of(cut_ll(retimed, HlsConfig(fragment=2.0))):
        durations = [c.duration for c in chunks if c.duration is not None]
        assert all(d is not None and 0.15 <= d <= 0.2 for d in durations[:-1]), durations
        assert sum(d for d in durations if d) == pytest.approx(cut.duration, abs=1e-9)


def test_audio_only_parts_are_all_independent(tags: list[FlvTag]) -> None:
    audio = [t for t in tags if t.tag_type == TAG_AUDIO]
    segments = segments_of(cut_ll(audio, HlsConfig(fragment=1.0, aof_ratio=2.1)))
    assert segments
    for _, chunks, cut in segments:
        ends = [c for c in chunks if c.duration is not None]
        assert all(c.independent for c in ends) and all(c.duration is not None and c.duration <= 0.2 for c in ends)
        assert sum(c.duration or 0 for c in ends) == pytest.approx(cut.duration, abs=1e-9)


def test_without_hls_ll_the_segmenter_answers_cuts_only(tags: list[FlvTag]) -> None:
    events = cut_ll(tags, HlsConfig(fragment=1.0), part=0.0)
    assert events and all(isinstance(e, Cut) for e in events)


# ---- the LL playlist model ------------------------------------------------------------------


def ll_playlist(n: int, open_parts: int = 2, ended: bool = False) -> Playlist:
    p = Playlist(1, version=VERSION_LL, ll=LowLatency(0.2))
    for i in range(n):
        parts = [Part(f"s-{i}.{k}.m4s", 0.2, k == 0) for k in range(5)]
        p.append(Segment(i, f"s-{i}.m4s", 1.0, program_date_time=1e9 + i, map_uri="s-init.mp4", parts=parts))
    assert p.ll is not None
    p.ll.open = Segment(n, "", 0.0, program_date_time=1e9 + n, map_uri="s-init.mp4",
                        parts=[Part(f"s-{n}.{k}.m4s", 0.2, k == 0) for k in range(open_parts)])
    p.ll.hint = f"s-{n}.{open_parts}.m4s"
    p.ended = ended
    return p


def test_ll_playlists_render_server_control_parts_of_the_last_segments_and_a_hint() -> None:
    text = render(ll_playlist(6))
    parsed = m3u8.loads(text)
    assert parsed.version == 9 and parsed.part_inf.part_target == 0.2
    sc = parsed.server_control
    assert (sc.can_block_reload, sc.part_hold_back, sc.can_skip_until) == ("YES", 0.6, 6.0)
    assert [len(seg.parts) for seg in parsed.segments] == [0, 0, 0, 5, 5, 5, 2]
    assert parsed.segments[-1].uri is None and parsed.preload_hint.uri == "s-6.2.m4s"
    assert [bool(p.independent) for p in parsed.segments[3].parts] == [True, False, False, False, False]
    assert text.count("#EXT-X-PROGRAM-DATE-TIME") == 7
    # the segment under way without parts yet: only the hint
    bare = render(ll_playlist(2, open_parts=0))
    assert bare.endswith('#EXTINF:1.000,\ns-1.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s-2.0.m4s"\n')
    ended = render(ll_playlist(6, ended=True))
    assert "PRELOAD-HINT" not in ended and "s-6.0" not in ended and ended.endswith("#EXT-X-ENDLIST\n")


def test_an_ll_playlist_reads_back_with_its_parts() -> None:
    text = render(ll_playlist(4, ended=True))
    back = parse(text)
    assert back is not None and back.version == VERSION_LL and back.ll is not None and back.ll.part_target == 0.2
    assert [len(s.parts) for s in back.segments] == [0, 5, 5, 5]
    assert back.segments[1].parts[0] == Part("s-1.0.m4s", 0.2, True)
    assert render(back) == text


# ---- the writer's notices -------------------------------------------------------------------


class _Source:
    """What HlsWriter uses of a LiveSource."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.key = "__defaultVhost__/live/s"
        self.loop = loop
        self.prompt: bool | None = None

    def add_consumer(self, sink: object, encoding: object, **kw: object) -> object:
        self.prompt = bool(kw.get("prompt"))
        return object()

    def remove_consumer(self, consumer: object) -> None:
        pass


def run_writer(flv: bytes, hls: HlsConfig, on_part: PartListener | None = None) -> HlsWriter:
    """An HlsWriter fed `flv` (tags, as a sink gets them) in pieces, the disk kept up with, then stopped."""
    async def main() -> HlsWriter:
        disk = DiskPool(2)
        writer = HlsWriter(_Source(asyncio.get_running_loop()), hls, disk, on_part=on_part)  # type: ignore[arg-type]
        for i in range(0, len(flv), 3000):
            writer.write(flv[i:i + 3000])
            await writer.lane.drain()
        writer.stop()
        await disk.drain()
        await asyncio.sleep(0.05)
        await disk.drain()
        disk.close()
        return writer

    return asyncio.run(main())


def test_the_writer_tells_each_part_once_it_and_the_playlist_naming_it_are_on_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flv = encode_h264_aac_flv(tmp_path.parent / "notices.flv", seconds=4).read_bytes()[13:]  # tags, as a sink gets them
    root = tmp_path / "hls"
    hls = HlsConfig(enabled=True, fragment=1.0, path=str(root), use_fmp4=True, ll=True, part=0.2, dispose=0)
    seen: list[tuple[PartEvent, bool, list[tuple[int, int]], list[int], bool]] = []

    def on_part(event: PartEvent) -> None:
        """What a server would find on disk at this moment."""
        text = (root / "live" / "s.m3u8").read_text()
        p = m3u8.loads(text)
        listed = [(p.media_sequence + i, k) for i, seg in enumerate(p.segments) for k in range(len(seg.parts))]
        whole = [p.media_sequence + i for i, seg in enumerate(p.segments) if seg.uri]
        final = root / "live" / f"s-{event.msn}.{event.part}.m4s"
        exists = final.exists() or (event.kind == "chunk" and Path(str(final) + ".partial").exists())
        seen.append((event, exists, listed, whole, p.is_endlist))

    playlists: list[str] = []

    def write_atomic(path: str, data: bytes | Iterable[bytes]) -> int:
        if path.endswith(".m3u8"):
            playlists.append(bytes(data).decode() if isinstance(data, bytes) else "")
        return diskio.write_atomic(path, data)

    monkeypatch.setattr(hls_module, "write_atomic", write_atomic)
    writer = run_writer(flv, hls, on_part)
    assert writer.source.prompt is True  # type: ignore[attr-defined]  # each message at once
    # every version a player could read: a hint until the end, then ENDLIST and no hint
    assert playlists and all(("#EXT-X-ENDLIST" in text) != ("#EXT-X-PRELOAD-HINT" in text) for text in playlists)
    assert [("#EXT-X-ENDLIST" in text) for text in playlists].index(True) == len(playlists) - 1
    kinds = [e.kind for e, *_ in seen]
    assert kinds[-1] == "ended" and kinds.count("ended") == 1 and seen[-1][4]
    parts = [(e.msn, e.part) for e, *_ in seen if e.kind == "part"]
    assert parts == sorted(parts) and len(parts) == len(set(parts)) == 20  # 4 s of 5 parts a second
    for event, exists, listed, whole, _ in seen:
        assert event.key == "__defaultVhost__/live/s" and event.m3u8_url == "live/s.m3u8"
        assert event.m3u8_path == str(root / "live" / "s.m3u8")
        if event.kind in ("part", "chunk"):
            assert exists, event
        if event.kind == "part":
            assert (event.msn, event.part) in listed, (event, listed)
        if event.kind == "segment":
            assert event.msn in whole and event.part == 5, (event, whole)
    chunks = [(e.msn, e.part) for e, *_ in seen if e.kind == "chunk"]
    assert chunks and all(c in parts for c in chunks)  # every part grew before it was complete
    segments = [e.msn for e, *_ in seen if e.kind == "segment"]
    assert segments == [0, 1, 2, 3]
    assert not list(root.rglob("*.partial")) and not list(root.rglob("*.tmp"))


def test_a_part_that_cannot_be_written_is_not_listed_and_its_segment_still_is(tmp_path: Path) -> None:
    flv = encode_h264_aac_flv(tmp_path.parent / "notices.flv", seconds=4).read_bytes()[13:]
    root = tmp_path / "hls"
    (root / "live" / "s-1.2.m4s.partial").mkdir(parents=True)  # appending to it fails
    hls = HlsConfig(enabled=True, fragment=1.0, path=str(root), use_fmp4=True, ll=True, part=0.2, dispose=0)
    told: list[PartEvent] = []
    writer = run_writer(flv, hls, told.append)
    assert writer.errors >= 1  # said (hls_on_error continue)
    p = m3u8.loads((root / "live" / "s.m3u8").read_text())
    assert [seg.uri for seg in p.segments] == ["s-0.m4s", "s-1.m4s", "s-2.m4s", "s-3.m4s"]
    assert [len(seg.parts) for seg in p.segments] == [0, 0, 5, 5]  # parts of the last 3, none of the broken one
    assert not [e for e in told if e.kind == "part" and e.msn == 1 and e.part >= 2]
    assert [e.msn for e in told if e.kind == "segment"] == [0, 1, 2, 3]
    joined = tmp_path / "s-1.mp4"
    joined.write_bytes((root / "live" / "s-init.mp4").read_bytes() + (root / "live" / "s-1.m4s").read_bytes())
    assert len(ffprobe_packets(joined, "v")) == 25  # the segment file is whole
