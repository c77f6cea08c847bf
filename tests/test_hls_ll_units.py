"""Low-Latency HLS, the writer's sans-I/O side: the `hls_ll`/`hls_part` directives, part names,
the delta playlist of `_HLS_skip=YES`, the part cutter and the LL playlist model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import m3u8
import pytest
from conftest import SRS

from srv.app.hls_ll import part_path, partial_path, render_delta, split_part
from srv.conf import ConfigErrors, load
from srv.conf.model import HlsConfig


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
