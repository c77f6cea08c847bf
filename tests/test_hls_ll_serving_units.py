"""LL-HLS serving, without a server: the delivery directives and their verdicts
(srv/app/hls_reload.py), the per-stream waits of a worker (srv/net/hls_waits.py) and the
playlist rewriting for viewers' ctx (srv/http/hls.py)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest

from srv.app import hls_reload
from srv.app.hls_reload import Directives, Verdict, parse_directives, state_of, verdict
from srv.http import hls
from srv.net import hls_waits
from srv.net.hls_waits import PlaylistWaits


def ll_playlist(media_sequence: int = 40, segments: int = 3, parts: int = 1, ended: bool = False) -> str:
    """A playlist as the LL-HLS writer writes it: `segments` complete ones of 5 parts (the last
    three list theirs), then `parts` parts of the next one and the hint."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:1",
             "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6.000",
             "#EXT-X-PART-INF:PART-TARGET=0.200", f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
             '#EXT-X-MAP:URI="s-init.mp4"']
    for i in range(segments):
        seq = media_sequence + i
        if i >= segments - 3:
            for k in range(5):
                independent = ",INDEPENDENT=YES" if k == 0 else ""
                lines.append(f'#EXT-X-PART:DURATION=0.200,URI="s-{seq}.{k}.m4s"{independent}')
        lines += ["#EXTINF:1.000,", f"s-{seq}.m4s"]
    nxt = media_sequence + segments
    for k in range(parts):
        lines.append(f'#EXT-X-PART:DURATION=0.200,URI="s-{nxt}.{k}.m4s"')
    if ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s-{nxt}.{parts}.m4s"')
    return "\n".join(lines) + "\n"


def test_directives_parse_and_bad_ones_are_named() -> None:
    assert parse_directives([("_HLS_msn", "12"), ("_HLS_part", "3")]) == Directives(12, 3)
    assert parse_directives([("_HLS_msn", "12"), ("_HLS_skip", "YES")]) == Directives(12, None, "YES")
    assert parse_directives([("hls_ctx", "x")]) == Directives()
    assert "without" in str(parse_directives([("_HLS_part", "1")]))
    for bad in ("-1", "x", "1.5", ""):
        assert isinstance(parse_directives([("_HLS_msn", bad)]), str)
    assert isinstance(parse_directives([("_HLS_skip", "NO")]), str)


def test_state_reads_segments_parts_and_the_hint() -> None:
    state = state_of(ll_playlist(media_sequence=40, segments=3, parts=2))
    assert (state.media_sequence, state.segments, state.parts, state.next_msn) == (40, 3, 2, 43)
    assert state.can_block and state.part_target == pytest.approx(0.2) and state.target == 1
    assert state.hint == "s-43.2.m4s" and state.parts_per_segment == 5
    assert state.can_skip_until == pytest.approx(6.0) and state.hold == 3
    assert state.advance_limit == 15  # three seconds of 0.2 s parts


def test_verdicts_follow_rfc8216bis() -> None:
    state = state_of(ll_playlist(media_sequence=40, segments=3, parts=2))  # last complete: 42
    assert verdict(state, Directives(42)) is Verdict.READY
    assert verdict(state, Directives(30)) is Verdict.READY  # behind: the playlist as it is
    assert verdict(state, Directives(43)) is Verdict.WAIT  # the segment in progress, whole
    assert verdict(state, Directives(43, 1)) is Verdict.READY
    assert verdict(state, Directives(43, 2)) is Verdict.WAIT  # the hinted part
    assert verdict(state, Directives(42, 9)) is Verdict.READY  # a complete segment has all its parts
    assert verdict(state, Directives(44)) is Verdict.WAIT  # last + 2
    assert verdict(state, Directives(45)) is Verdict.TOO_FAR  # last + 3
    assert verdict(state, Directives(47)) is Verdict.TOO_FAR  # five segments ahead
    assert verdict(state, Directives(43, 16)) is Verdict.WAIT  # 15 parts past the last one
    assert verdict(state, Directives(43, 17)) is Verdict.TOO_FAR  # past the Advance Part Limit
    assert verdict(state, Directives(44, 4)) is Verdict.WAIT
    ended = state_of(ll_playlist(segments=3, parts=0, ended=True))
    assert verdict(ended, Directives(44, 2)) is Verdict.READY  # ENDLIST answers at once
    assert not ended.hint


def test_a_playlist_without_server_control_ignores_the_directives() -> None:
    plain = state_of("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.0,\ns-3.ts\n")
    assert not hls_reload.holds(plain, Directives(9))
    assert hls_reload.cache_control(plain, Directives(9)) == b"no-cache"
    ll = state_of(ll_playlist())
    assert hls_reload.cache_control(ll, Directives(9)) == b"public, max-age=3"
    assert hls_reload.cache_control(ll, Directives()) == b"no-cache"


def test_a_delta_playlist_counts_its_skipped_segments() -> None:
    text = ll_playlist(media_sequence=40, segments=3, parts=1).replace(
        '#EXT-X-MAP:URI="s-init.mp4"', '#EXT-X-SKIP:SKIPPED-SEGMENTS=10\n#EXT-X-MAP:URI="s-init.mp4"')
    assert state_of(text).next_msn == 53


def test_the_hint_is_matched_by_url_path() -> None:
    state = state_of(ll_playlist(media_sequence=40, segments=3, parts=2))
    assert hls_reload.is_hint(state, "/live/s-43.2.m4s")
    assert not hls_reload.is_hint(state, "/live/s-43.3.m4s")
    assert not hls_reload.is_hint(state, "/live/xs-43.2.m4s")


def test_viewer_ctx_goes_on_part_and_hint_uris() -> None:
    out = hls.with_ctx(ll_playlist(segments=1, parts=1).encode(), "1-2-ab").decode()
    assert 'URI="s-41.0.m4s?hls_ctx=1-2-ab"' in out
    assert 'PRELOAD-HINT:TYPE=PART,URI="s-41.1.m4s?hls_ctx=1-2-ab"' in out
    assert 'URI="s-40.0.m4s?hls_ctx=1-2-ab",INDEPENDENT=YES' in out


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_held_requests_wake_on_their_streams_notification_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a.m3u8", tmp_path / "b.m3u8"
    write(a, ll_playlist(parts=1))
    write(b, ll_playlist(parts=1))

    async def main() -> tuple[list[object], Counter[str], list[tuple[str, str]]]:
        counters: Counter[str] = Counter()
        sent: list[tuple[str, str]] = []
        waits = PlaylistWaits(asyncio.get_running_loop(), counters, send=lambda k, kind: sent.append((k, kind)))
        wa, wb = waits.watch("v/live/a", str(a)), waits.watch("v/live/b", str(b))
        await wa.current()
        await wb.current()
        want = Directives(43, 1)
        held = [asyncio.ensure_future(waits.hold(w, lambda s: verdict(s, want) is not Verdict.WAIT, 3.0))
                for w in (wa, wa, wb)]
        await asyncio.sleep(0.05)
        write(a, ll_playlist(parts=2))
        write(b, ll_playlist(parts=2))
        waits.publish("v/live/a", "part")  # the owner's writer: only a's requests wake
        done, _ = await asyncio.wait(held, timeout=hls_waits.FALLBACK_POLL * 0.8)
        results = [t.result() if t in done else None for t in held]
        for t in held:
            t.cancel()
        return results, counters, sent

    results, counters, sent = asyncio.run(main())
    assert results[0] is not None and results[1] is not None and results[2] is None
    state, text = results[0]  # type: ignore[misc]
    assert state.parts == 2 and b's-43.1.m4s' in text
    assert sent == [("v/live/a", "part")]
    assert counters["hls_ll_notified"] == 1 and counters["hls_ll_held"] == 3


def test_a_lost_notification_costs_one_fallback_poll(tmp_path: Path) -> None:
    a = tmp_path / "a.m3u8"
    write(a, ll_playlist(parts=1))

    async def main() -> tuple[object, Counter[str]]:
        counters: Counter[str] = Counter()
        waits = PlaylistWaits(asyncio.get_running_loop(), counters)
        w = waits.watch("k", str(a))
        await w.current()
        want = Directives(43, 1)
        task = asyncio.ensure_future(waits.hold(w, lambda s: verdict(s, want) is not Verdict.WAIT, 5.0))
        await asyncio.sleep(0.05)
        write(a, ll_playlist(parts=2))  # and nobody tells
        got = await task
        return got, counters

    got, counters = asyncio.run(main())
    assert got is not None and got[0].parts == 2  # type: ignore[index]
    assert counters["hls_ll_polled"] == 1 and counters["hls_ll_notified"] == 0


def test_a_request_held_too_long_gives_up(tmp_path: Path) -> None:
    a = tmp_path / "a.m3u8"
    write(a, ll_playlist(parts=1))

    async def main() -> object:
        waits = PlaylistWaits(asyncio.get_running_loop(), Counter())
        w = waits.watch("k", str(a))
        await w.current()
        return await waits.hold(w, lambda s: False, 0.2)

    assert asyncio.run(main()) is None


def test_a_viewers_blocking_requests_ask_its_owner_about_once_a_second() -> None:
    from types import SimpleNamespace

    from srv.app.hls_viewers import HlsViewers, Visit
    from srv.http import hls_serve

    async def main() -> tuple[list[Visit], int]:
        loop = asyncio.get_running_loop()
        asked: list[str] = []

        def hls_visit(slot: int, ctx: str, sent: int) -> asyncio.Future[object]:
            asked.append(ctx)
            fut: asyncio.Future[object] = loop.create_future()
            fut.set_result(SimpleNamespace(state=Visit.ALIVE.value))
            return fut

        ctx = SimpleNamespace(hls=HlsViewers(b"k" * 32, 1), master=SimpleNamespace(hls_visit=hls_visit))
        got = [await hls_serve._visit(ctx, "2-7-ab", 2, blocking=True) for _ in range(5)]  # type: ignore[arg-type]
        got.append(await hls_serve._visit(ctx, "2-7-ab", 2))  # type: ignore[arg-type]
        return got, len(asked)

    got, asked = asyncio.run(main())
    assert got == [Visit.ALIVE] * 6
    assert asked == 2  # the first blocking request, and the plain one (always asked)
