"""LiveSource and Consumer: one published stream and the players reading it.

The source keeps one ring of packets shared by everyone; a consumer is only a cursor into it.
The ring starts at the oldest position anyone still needs (the GOP cache's keyframe, or the
slowest player within `queue_length`), so memory is bounded by the stream's bitrate, not by the
number of players.

Merged writes (SRS's `mw_latency`): the packets that arrived since the last flush are joined
into ONE `bytes` per wire format, and every caught-up player gets that same object in one
`transport.write` — one syscall per player per tick, no per-player copy. A player whose
transport pushes back (`pause_writing`) simply stops advancing; when it resumes it catches up
from its cursor, or, if it fell more than `queue_length` behind, skips whole GOPs to the latest
keyframe (after the current sequence headers and metadata, which are never dropped). A player
that stays paused longer than `queue_length` is disconnected.

The players of one wire format are split into up to `PHASES` buckets (ConsumerGroup), each
flushed on its own tick of the `mw_latency` grid, offset by a fraction of the window: the work of
flushing thousands of players is spread over the window instead of one callback that holds the
loop (and every other stream's tick) for tens of milliseconds.

`min_latency on`: a video message is sent at once (with whatever waited before it); audio and
metadata wait for the next video message, at most `min(mw_latency, MIN_LATENCY_WAIT)`. One send
per video frame instead of one per message, for a delay of at most one frame on audio.

What a new player receives, in order: metadata, video and audio sequence headers, the cached
GOP (from its keyframe), then live packets — so it decodes from its first frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from srv import log as srvlog
from srv.app.packet import AUDIO, DATA, FLV, VIDEO, Encoding, Packet, wire_parts
from srv.app.roles import Publisher
from srv.conf.model import ForwardConfig, VhostConfig
from srv.media.metadata import StreamDescription, StreamMetadata

log = logging.getLogger("srv.source")

RATE_WINDOW = 30.0  # seconds: SRS reports stream rates as recv_30s / send_30s
#: the flushes of one window are spread over this many phases at most, one per PHASE_STEP seconds
PHASES = 16
PHASE_STEP = 0.025
#: a new phase opens only when the least-filled one has this many consumers: a flush of fewer
#: players is short anyway, and players of a small audience keep getting the same batch together
SPREAD_AT = 100
#: `min_latency on`: the longest audio or metadata waits for the next video frame (seconds)
MIN_LATENCY_WAIT = 0.05
#: a player behind the live edge (it joined, or its transport resumed) is written at most this
#: many bytes at a time, and no more once its transport pauses. Writing all it missed at once put
#: seconds of stream into the transport's buffer on each resume, so the longer a starved loop's
#: turn, the more each resume cost in the next one (docs/performance.md, "held loops").
CATCH_UP_CHUNK = 256 * 1024
#: a flush writes at most this many consumers per callback; the rest go on in the next turn of the
#: loop (the same batch, in order). One callback writing a frame to 3000 players held the loop
#: ~25 ms: every other stream's flush and every publisher's read waited behind it.
FLUSH_SLICE = 256


class Sink(Protocol):
    """What a consumer writes to: a player connection (RTMP, HTTP-FLV, a pulling worker), a
    forwarder, a recording (HLS, DVR)."""

    def write(self, data: bytes) -> None: ...
    def writelines(self, data: list[bytes]) -> None: ...
    def on_unpublish(self) -> None: ...
    def on_publish(self) -> None: ...
    def close_slow(self, reason: str) -> None: ...


class Forwarding(Protocol):
    """A forwarder as the source and the hub see it (srv.net.forward.Forwarder)."""

    destination: str
    config: ForwardConfig

    def stop(self) -> None: ...
    def reconfigure(self, config: ForwardConfig) -> None: ...
    def stats(self) -> dict[str, Any]: ...


class Recording(Protocol):
    """An output the publisher's worker writes to disk (HLS, DVR), as the source and hub see it.

    The hub starts one per `kind` when a local publish starts and the vhost wants it (see
    `StreamHub.recorders`); it reads the stream as an internal consumer. `stop` is called when
    the publish ends (finish and close the files; the file work may go on off the loop);
    `reconfigure` after a reload, answering False when the new vhost no longer wants it (the hub
    then stops and drops it); `stats` is the recording's part of the stream's API figures.
    """

    kind: str

    def stop(self) -> None: ...
    def reconfigure(self, vhost: VhostConfig) -> bool: ...
    def stats(self) -> dict[str, Any]: ...


class Consumer:
    """One output's cursor into the source's ring, with the one drop policy every output shares.

    `queue_length` (seconds of media behind the live edge before whole GOPs are skipped) and
    `stall_timeout` (seconds paused before `sink.close_slow`) default to the vhost's play
    settings (None); a forwarder passes its own block's figures.
    """

    __slots__ = ("source", "sink", "encoding", "internal", "pos", "first", "paused", "paused_since",
                 "dropped", "sent_bytes", "group", "queue_length", "stall_timeout", "label", "headers_due",
                 "prompt", "removed")

    def __init__(self, source: LiveSource, sink: Sink, encoding: Encoding, internal: bool,
                 queue_length: float | None = None, stall_timeout: float | None = None,
                 label: str = "player") -> None:
        self.source = source
        self.sink = sink
        self.encoding = encoding
        self.internal = internal  # not a player: a pull for another worker, a forwarder
        self.pos = 0
        self.first = 0  # where in the ring it started (messages delivered: pos - first - dropped)
        self.paused = False
        self.paused_since = 0.0
        self.dropped = 0  # packets skipped because the player was too slow
        self.sent_bytes = 0
        self.group: ConsumerGroup | None = None
        self.queue_length = queue_length
        self.stall_timeout = stall_timeout
        self.label = label  # how the logs name it when it is too slow
        self.headers_due = False  # skipped while paused: headers go out when it resumes
        self.prompt = False  # wants each message at once, not a merge per mw_latency (LL-HLS)
        self.removed = False  # remove_consumer was called

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.paused_since = time.monotonic()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.source.catch_up(self)


class ConsumerGroup:
    """Consumers that share one encoding and one phase of the merge window, hence one flush
    schedule and one batch per flush."""

    __slots__ = ("encoding", "phase", "consumers", "flushed", "handle", "timed", "starving", "low", "prompt",
                 "flush", "due")

    def __init__(self, encoding: Encoding, phase: int, flushed: int, prompt: bool = False) -> None:
        self.encoding = encoding
        self.phase = phase  # its index among the encoding's merging buckets: where in the window it flushes
        # its consumers want each message at once (the LL-HLS writer): a bucket of their own, so
        # the players of the same encoding keep their merged writes
        self.prompt = prompt
        self.consumers: list[Consumer] = []
        self.flushed = flushed
        self.handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self.timed = False  # handle is a timer (not a call_soon)
        # a player joined with nothing to play yet: its first packets must not wait for a merge
        self.starving = False
        # no consumer's cursor is below this (as of its last flush, or lower): what _trim keeps
        self.low = flushed
        # a flush under way, sliced over turns of the loop (FLUSH_SLICE): its batch and who is left
        self.flush: _Flush | None = None
        # a message that wanted an immediate flush arrived while one was under way
        self.due = False


class _Flush:
    """One flush of a bucket, written FLUSH_SLICE consumers per callback: the batch of
    [start, end), the consumers it was made for (in order), how far it got, their lowest cursor."""

    __slots__ = ("batch", "start", "end", "consumers", "next", "low", "players")

    def __init__(self, batch: bytes, start: int, end: int, consumers: list[Consumer]) -> None:
        self.batch = batch
        self.start = start  # the bucket's flushed position the batch continues from
        self.end = end
        self.consumers = consumers
        self.next = 0
        self.low = end
        self.players = 0


class LiveSource:
    def __init__(self, key: str, vhost: VhostConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key  # "vhost/app/stream"
        self.vhost = vhost
        self.loop = loop
        self.publisher: Publisher | None = None
        self.origin = False  # True when the publisher is a local client (not a pull)
        self.meta: Packet | None = None
        self.metadata: StreamMetadata | None = None  # meta's onMetaData, as the RTMP layer decoded it
        self.video_sh: Packet | None = None
        self.audio_sh: Packet | None = None
        self.description = StreamDescription()  # set by the hub when the headers change
        # hub callback: metadata or a sequence header changed
        self.on_headers: Callable[[LiveSource], None] | None = None
        self.ring: list[Packet] = []
        self.base = 0  # sequence number of ring[0]
        self.gop_start: int | None = None
        self.gop_bytes = 0  # payload bytes from gop_start on
        self.video_seen = False
        self.groups: dict[int, list[ConsumerGroup]] = {}  # per encoding, its phase buckets
        self.phase0 = (zlib.crc32(key.encode()) % 1000) / 1000  # streams' ticks fall apart too
        # fed by a pull from the worker that owns the publisher: what arrives was already merged
        # there (one batch per mw_latency), so it goes out at once instead of waiting again
        self.upstream_merged = False
        self.last_ts = -1
        self.last_audio_ts = self.last_video_ts = -1
        self.ts_delta = 0
        self.await_first = False
        # after a republish: the timestamp each track's first message must pass (see on_message)
        self.ts_floor: dict[int, int] = {}
        # figures for the API and the exporter
        self.publish_started = 0.0
        self.frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped = 0
        self.forwarders: list[Forwarding] = []  # outputs with a life of their own (reconnects)
        self.recordings: list[Recording] = []  # HLS, DVR: written where the publisher is
        self.backend_urls: dict[str, tuple[str, ...]] = {}  # forward backend -> its destinations
        # (monotonic time, bytes_in, bytes_out), one a second for the last RATE_WINDOW seconds
        self.rate_samples: deque[tuple[float, int, int, int]] = deque()  # (time, bytes in, bytes out, frames)
        self.last_key: tuple[int, int] | None = None  # (timestamp, frames) at the last keyframe
        self.gop: tuple[int, int] = (0, 0)  # frames and ms between the last two keyframes
        # hub callback when no publisher and no consumers remain
        self.on_empty: Callable[[LiveSource], None] | None = None
        self.configure(vhost)

    def configure(self, vhost: VhostConfig) -> None:
        self.vhost = vhost
        play = vhost.play
        self.gop_cache = play.gop_cache
        self.gop_max = play.gop_cache_max_frames
        self.gop_max_bytes = play.gop_cache_max_size
        self.queue_length = play.queue_length
        self.min_latency = vhost.min_latency
        mw = play.mw_latency / 1000
        # min_latency: a video frame goes out at once; the rest waits for one, not for the window
        self.mw_latency = min(mw, MIN_LATENCY_WAIT) if vhost.min_latency else mw
        self.phases = 1 if vhost.min_latency else max(1, min(PHASES, round(mw / PHASE_STEP)))

    # ---- publisher side ------------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self.base + len(self.ring)

    def on_publish(self, publisher: Publisher, origin: bool) -> None:
        self.publisher = publisher
        self.origin = origin
        self.upstream_merged = not origin
        self.publish_started = time.time()
        self.await_first = self.last_ts >= 0  # continue timestamps for players that stayed
        self.ts_floor = {AUDIO: self.last_audio_ts, VIDEO: self.last_video_ts} if self.await_first else {}
        for c in self.consumers():
            c.sink.on_publish()

    def on_unpublish(self) -> None:
        self.publisher = None
        self.origin = False
        self.meta = self.video_sh = self.audio_sh = None
        self.metadata = None
        self.description = StreamDescription()
        self.video_seen = False
        self.flush_all()
        for f in self.forwarders:  # before the cursors jump to the end: their figures stay true
            f.stop()
        self.forwarders.clear()
        for r in self.recordings:
            r.stop()
        self.recordings.clear()
        end = self.end
        self.ring.clear()
        self.base = end
        self.gop_start = None
        for g in self.buckets():
            g.flushed = g.low = end
        for c in self.consumers():
            c.pos = end
            c.sink.on_unpublish()
        self.backend_urls = {}
        self._maybe_empty()

    def _headers_changed(self) -> None:
        if self.on_headers is not None:
            self.on_headers(self)

    def on_message(self, type_id: int, timestamp: int, payload: bytes,
                   metadata: Mapping[str, object] | None = None) -> Packet:
        """One audio, video or metadata message from the publisher (hot path).

        `metadata`: an onMetaData message's values, decoded once by the RTMP layer (the payload
        is never decoded again here or in the hub).

        Players stay across a republish, so the new publisher's timestamps are shifted to go on
        from the old ones, per track: the tracks of an encoder do not end together (audio often
        runs ~50 ms ahead of the last video frame), so the first message starts after the latest
        timestamp of any track, and if a track's first message would still fall behind that
        track's last one, the shift grows until it does not (a small gap, never a step back)."""
        if self.await_first:
            self.await_first = False
            self.ts_delta = max(self.last_ts, *self.ts_floor.values()) + 1 - timestamp
        ts = (timestamp + self.ts_delta) & 0xFFFFFFFF
        if self.ts_floor and type_id in self.ts_floor:
            floor = self.ts_floor.pop(type_id)
            if ts <= floor:
                self.ts_delta += floor + 1 - ts
                ts = floor + 1
        pkt = Packet(type_id, ts, payload)
        self.last_ts = ts
        self.bytes_in += len(payload)
        if type_id == VIDEO:
            self.last_video_ts = ts
            self.frames += 1
            if pkt.is_header:
                self.video_sh = pkt
                self._headers_changed()
            else:
                self.video_seen = True
                if pkt.is_keyframe:
                    self._new_gop()
                    self._measure_gop(ts)
        elif type_id == AUDIO:
            self.last_audio_ts = ts
            if pkt.is_header:
                self.audio_sh = pkt
                self._headers_changed()
            elif not self.video_seen and self.gop_start is None and self.video_sh is None:
                self._new_gop()  # audio-only: cache from the first frame, bounded below
        elif type_id == DATA:
            self.meta = pkt
            self.metadata = StreamMetadata.from_amf(metadata) if metadata is not None else None
            self._headers_changed()
        ring = self.ring
        ring.append(pkt)
        if self.gop_start is not None:
            self.gop_bytes += len(payload)
            if self.base + len(ring) - self.gop_start > self.gop_max or (
                    self.gop_max_bytes and self.gop_bytes > self.gop_max_bytes):
                self.gop_start = None  # too long a GOP: stop caching until the next keyframe
        if self.groups:
            now = self.upstream_merged or not self.mw_latency or (self.min_latency and type_id == VIDEO)
            for bs in self.groups.values():
                for g in bs:
                    if g.handle is None:
                        if g.consumers:
                            self._arm(g, now or g.prompt)
                    elif now and g.timed:  # a video frame ends the wait of what came before it
                        g.handle.cancel()
                        self._arm(g, True)
                    elif now and g.flush is not None:
                        g.due = True  # sliced flush under way: the next one goes at once after it
        else:
            # with no consumer only the GOP cache holds the ring: trim when _trim would cut
            # (the cache moved on by more than 64 packets, or there is none to keep)
            start = self.gop_start
            if start is None or start - self.base > 64:
                self._trim()
        return pkt

    def _arm(self, g: ConsumerGroup, now: bool) -> None:
        """Schedule g's flush: at once, or at its next tick (its phase of the merge window)."""
        if now or g.starving:
            g.handle = self.loop.call_soon(self._flush_group, g)
            g.timed = False
            return
        mw = self.mw_latency
        if self.min_latency:
            g.handle = self.loop.call_later(mw, self._flush_group, g)
        else:  # ticks of this bucket: t = (phase0 + phase / phases) * mw + k * mw
            t = self.loop.time()
            offset = (self.phase0 + (g.phase % self.phases) / self.phases) * mw
            g.handle = self.loop.call_at(t - (t - offset) % mw + mw, self._flush_group, g)
        g.timed = True

    def _measure_gop(self, ts: int) -> None:
        """The GOP the API shows: frames and time from the previous keyframe to this one."""
        if self.last_key is not None:
            self.gop = (self.frames - self.last_key[1], (ts - self.last_key[0]) & 0xFFFFFFFF)
        self.last_key = (ts, self.frames)

    def _new_gop(self) -> None:
        self.gop_start = self.end if self.gop_cache else None
        self.gop_bytes = 0

    # ---- consumers -----------------------------------------------------------------------------

    def buckets(self) -> list[ConsumerGroup]:
        return [g for bs in self.groups.values() for g in bs]

    def consumers(self) -> list[Consumer]:
        return [c for bs in self.groups.values() for g in bs for c in g.consumers]

    def _bucket(self, encoding: Encoding, prompt: bool) -> ConsumerGroup:
        """The bucket a new consumer of `encoding` joins: the prompt one (made on first use) for a
        prompt consumer; else the phase with the fewest consumers, or a new phase when that one
        already has SPREAD_AT and there are fewer than `phases`."""
        bs = self.groups.setdefault(encoding, [])
        if prompt:
            live = [b for b in bs if b.prompt]
            if not live:
                g = ConsumerGroup(encoding, 0, self.end, prompt=True)
                bs.append(g)
                return g
        else:
            merging = [b for b in bs if not b.prompt]
            live = merging[:self.phases]
            if not live or (len(live) < self.phases and min(len(b.consumers) for b in live) >= SPREAD_AT):
                g = ConsumerGroup(encoding, len(merging), self.end)
                bs.append(g)
                return g
        g = min(live, key=lambda b: len(b.consumers))
        if not g.consumers:  # left empty: it starts afresh, at the live edge
            if g.handle is not None:
                g.handle.cancel()
                g.handle = None
            g.flush = None
            g.due = False
            g.flushed = g.low = self.end
        return g

    def add_consumer(self, sink: Sink, encoding: Encoding, internal: bool = False,
                     queue_length: float | None = None, stall_timeout: float | None = None,
                     label: str = "player", prompt: bool = False) -> Consumer:
        """Attach an output; it first gets metadata, sequence headers and the GOP cache.
        `prompt`: it gets each message at once instead of a merge per mw_latency (the LL-HLS
        writer, whose parts would otherwise wait for the merge), in a bucket of its own."""
        c = Consumer(self, sink, encoding, internal, queue_length, stall_timeout, label)
        c.prompt = prompt
        g = self._bucket(encoding, prompt)
        c.group = g
        g.consumers.append(c)
        start = self.gop_start if self.gop_start is not None else g.flushed
        c.pos = c.first = min(start, g.flushed)
        g.low = min(g.low, c.pos)
        self._send_headers(c)
        if c.pos == g.flushed:
            g.starving = True
            if g.handle is not None and self.end > g.flushed:
                g.handle.cancel()  # packets are waiting for a merge: send them now
                self._arm(g, True)
        self.catch_up(c, upto=g.flushed)
        if g.flush is not None:  # joined during a sliced flush: its cursor counts in that flush's low
            g.flush.low = min(g.flush.low, c.pos)
        return c

    def remove_consumer(self, c: Consumer) -> None:
        g = c.group
        if g is not None and c in g.consumers:
            g.consumers.remove(c)
            c.removed = True  # a sliced flush under way skips it
            bs = self.groups[g.encoding]
            if not any(b.consumers for b in bs):
                for b in bs:
                    if b.handle is not None:
                        b.handle.cancel()
                del self.groups[g.encoding]
        self._maybe_empty()

    def _send_headers(self, c: Consumer) -> None:
        first = self.ring[c.pos - self.base] if c.pos < self.end else None
        out = []
        for h in (self.meta, self.video_sh, self.audio_sh):
            if h is not None and h is not first:
                out.append(h.encoded(c.encoding))
        if out:
            self._write(c, out)

    def catch_up(self, c: Consumer, upto: int | None = None) -> None:
        """Write what `c` has not had yet, skipping whole GOPs when it is too far behind."""
        if c.paused:
            return
        if c.headers_due:
            c.headers_due = False
            self._send_headers(c)
        end = self.end if upto is None else upto
        if c.pos < self.base or (c.pos < end and self._too_old(c)):
            self._skip(c)
        # in pieces of CATCH_UP_CHUNK, until the sink pushes back: what a player could not take
        # stays in the ring (shared) instead of the transport's buffer, and a turn of the loop
        # costs a bounded amount per player however long it was held (see CATCH_UP_CHUNK)
        enc = c.encoding
        ring = self.ring
        while c.pos < end and not c.paused:
            parts = []
            n = 0
            i = c.pos - self.base
            stop = end - self.base
            while i < stop and n < CATCH_UP_CHUNK:
                b = ring[i].encoded(enc)
                parts.append(b)
                n += len(b)
                i += 1
            c.pos = i + self.base  # before the write, which may pause it
            self._write(c, parts)

    def _too_old(self, c: Consumer) -> bool:
        limit = self.queue_length if c.queue_length is None else c.queue_length
        return self.last_ts - self.ring[c.pos - self.base].timestamp > limit * 1000

    def _skip(self, c: Consumer) -> None:
        """Drop whole GOPs: jump to the latest keyframe (or to now), headers first."""
        target = self.gop_start if self.gop_start is not None and self.gop_start > c.pos else self.end
        skipped = target - max(c.pos, self.base)
        c.dropped += skipped
        self.dropped += skipped
        c.pos = target
        log.log(srvlog.INFO, "%s: slow %s skipped %d packets", self.key, c.label, skipped)
        if c.paused:
            c.headers_due = True  # once, before what it gets next, however many GOPs it skips
        else:
            self._send_headers(c)

    def _write(self, c: Consumer, parts: list[bytes]) -> None:
        n = sum(map(len, parts))
        c.sent_bytes += n
        if not c.internal:
            self.bytes_out += n
        c.sink.writelines(parts)

    def _flush_group(self, g: ConsumerGroup, whole: bool = False) -> None:
        """Write what arrived since g's last flush to its consumers: one shared batch to each
        player that is caught up, the catch-up/drop rules to the others. FLUSH_SLICE consumers per
        call (`whole`: all of them); the rest are scheduled for the next turn of the loop, so one
        bucket of thousands never holds the loop for the whole fan-out."""
        g.handle = None
        f = g.flush
        if f is None:
            g.starving = False
            start, end = g.flushed, self.end
            if not (start < end and g.consumers):
                low = end
                for c in g.consumers:
                    if c.pos < low:
                        low = c.pos
                g.flushed = end
                g.low = low
                self._trim()
                return
            first = max(start, self.base)
            batch = b"".join(wire_parts(self.ring[first - self.base:], g.encoding))
            f = g.flush = _Flush(batch, start, end, list(g.consumers))
            g.flushed = end  # a player joining meanwhile is caught up to here; g.low holds the ring
        i = f.next
        stop = len(f.consumers) if whole else min(len(f.consumers), i + FLUSH_SLICE)
        self._flush_slice(g, f, i, stop)
        f.next = stop
        if stop < len(f.consumers):
            g.handle = self.loop.call_soon(self._flush_group, g)
            g.timed = False
            return
        g.flush = None
        self.bytes_out += len(f.batch) * f.players
        g.low = f.low
        self._trim()
        due, g.due = g.due, False
        if self.end > g.flushed and g.consumers and not whole:
            # messages came while it was sliced: flush them on their own schedule
            self._arm(g, due or self.upstream_merged or not self.mw_latency or g.prompt)

    def _flush_slice(self, g: ConsumerGroup, f: _Flush, i: int, stop: int) -> None:
        batch, start, end = f.batch, f.start, f.end
        n = len(batch)
        now = time.monotonic()
        low = f.low
        players = 0
        for c in f.consumers[i:stop]:
            if c.removed:  # left since the flush began
                continue
            if c.pos == start and not c.paused:
                c.sink.write(batch)
                c.sent_bytes += n
                players += not c.internal  # a pull is counted where its players are
                c.pos = end
                continue
            if c.paused:
                stalled = now - c.paused_since
                limit = max(self.queue_length, 1.0) if c.stall_timeout is None else c.stall_timeout
                if stalled > limit:
                    what = "queue_length" if c.stall_timeout is None else "limit"
                    c.sink.close_slow(f"{c.label} stalled for {stalled:.1f}s ({what} {limit:g}s)")
                elif c.pos < self.end and (c.pos < self.base or self._too_old(c)):
                    self._skip(c)  # bound the ring: paused players lose whole GOPs
            else:
                self.catch_up(c, upto=end)
            if c.pos < low:
                low = c.pos
        f.low = low
        f.players += players

    def flush_all(self) -> None:
        for g in self.buckets():
            if g.handle is not None:
                g.handle.cancel()
            if g.flush is not None:  # finish the sliced flush under way first
                self._flush_group(g, whole=True)
            self._flush_group(g, whole=True)

    def _trim(self) -> None:
        keep = self.end if self.gop_start is None else self.gop_start
        for bs in self.groups.values():
            for g in bs:
                if g.consumers:  # an empty bucket holds nothing back
                    keep = min(keep, g.low)
        cut = keep - self.base
        if cut > 64 or (cut > 0 and cut == len(self.ring)):
            del self.ring[:cut]
            self.base = keep

    def _maybe_empty(self) -> None:
        if self.publisher is None and not self.groups and self.on_empty is not None:
            self.on_empty(self)

    # ---- figures -------------------------------------------------------------------------------

    def sample_rates(self, now: float) -> None:
        """Called about once a second (the worker's heartbeat) to keep the 30 s rate window."""
        samples = self.rate_samples
        samples.append((now, self.bytes_in, self.bytes_out, self.frames))
        while now - samples[0][0] > RATE_WINDOW:
            samples.popleft()

    def kbps(self) -> tuple[int, int]:
        """(in, out) kbit/s over the last RATE_WINDOW seconds (0 until two samples a second apart)."""
        if len(self.rate_samples) < 2:
            return 0, 0
        t0, in0, out0, _ = self.rate_samples[0]
        t1, in1, out1, _ = self.rate_samples[-1]
        dt = t1 - t0
        if dt < 0.9:
            return 0, 0
        return int((in1 - in0) * 8 / 1000 / dt), int((out1 - out0) * 8 / 1000 / dt)

    def fps(self) -> float:
        """Video frames per second over the last RATE_WINDOW seconds (0 until two samples)."""
        if len(self.rate_samples) < 2:
            return 0.0
        t0, _, _, f0 = self.rate_samples[0]
        t1, _, _, f1 = self.rate_samples[-1]
        return round((f1 - f0) / (t1 - t0), 2) if t1 - t0 >= 0.9 else 0.0

    def stats(self) -> dict[str, Any]:
        cs = self.consumers()
        return {
            "key": self.key,
            "publishing": self.publisher is not None,
            "origin": self.origin,
            "publish_started": self.publish_started,
            "players": sum(not c.internal for c in cs),
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "dropped": self.dropped,
            "kbps_30s": self.kbps(),
            "fps": self.fps(),
            "gop": self.gop,
            "description": self.description,
            "forwards": [f.stats() for f in self.forwarders],
            "recordings": {r.kind: r.stats() for r in self.recordings},
        }


__all__ = ["LiveSource", "Consumer", "Sink", "Forwarding", "Recording", "FLV", "Packet"]
