"""DvrRecorder: SRS's DVR, one stream recorded to .flv or fragmented .mp4 files.

The hub starts one per local publish whose vhost has `dvr { enabled on; }` and whose
`dvr_apply` takes the stream (`make_recorder`); only the worker that owns the publisher
records. The recorder is the Sink of an internal FLV consumer of the source: it gets metadata,
sequence headers, then the packets as players do, in merged batches, and never pushes back
(it has no transport), so players are never slowed by the disk.

What goes into each file, in order: onMetaData, the video and audio sequence headers, then
the frames from a keyframe (audio-only: from the first frame). `dvr_plan segment` cuts when a
file has lasted `dvr_duration` seconds, on the next keyframe with `dvr_wait_keyframe on`: the
frame that cuts is the first of the new file, so no frame is lost or written twice. An MP4
file also starts anew when a sequence header changes (its moov describes one configuration).
`time_jitter full` starts each file at 0 and keeps each track's time from going back; `zero`
only starts at 0; `off` keeps the published timestamps.

File work goes through the recording's DiskLane (srv.app.diskio) in order: open, append (one
job per merged batch), finish (srv.app.dvr_files), retention. A write error (a full disk) or a
lane that stays full stops the recording with one log line and state `error` in the API; the
file written so far is finished. After each file is finished and renamed: a log line,
`on_dvr` (SRS's body with `cwd` and `file`), and `dvr_keep`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from typing import Any

from srv import log as srvlog
from srv.app import dvr_files
from srv.app.diskio import DiskLane, LaneFull
from srv.app.http_hooks import HookRequest
from srv.app.packet import FLV
from srv.app.paths import UnsafePath, expand, place_under
from srv.app.source import Consumer, LiveSource, Recording
from srv.conf.model import DvrConfig, VhostConfig
from srv.media.codec import audio_is_sequence_header, video_is_sequence_header
from srv.media.flv import FLV_HEADER, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, FlvReader, FlvTag, encode_tag
from srv.media.flv_file import RecordingInfo, metadata_head, metadata_values, srv_values, starts_picture
from srv.media.fmp4 import Fmp4Muxer
from srv.media.mp4_file import file_head
from srv.net import hooks
from srv.net.context import ConnectionContext

log = logging.getLogger("srv.dvr")

FRAGMENT_MS = 1000  # an MP4 fragment at least every second (and on every keyframe)
MAX_PENDING = 512  # file jobs a recording may have waiting before it counts as a stuck disk


class DvrState(enum.Enum):
    WAITING = "waiting"  # for the first keyframe
    RECORDING = "recording"
    ERROR = "error"
    STOPPED = "stopped"


def make_recorder(ctx: ConnectionContext, src: LiveSource) -> Recording | None:
    """The hub's "dvr" factory: a recorder when the vhost records this stream, else None."""
    config = src.vhost.dvr
    _vhost, app, stream = src.key.split("/", 2)
    if not config.enabled or not config.applies(app, stream):
        return None
    return DvrRecorder(ctx, src, config)


class _File:
    """The file being written: its name, time base and (MP4) muxer."""

    def __init__(self, final: str, info: RecordingInfo, base_ts: int, mp4: bool) -> None:
        self.final = final
        self.info = info
        self.base_ts = base_ts
        self.first_ts = -1  # first media timestamp as written
        self.last: dict[int, int] = {}  # per track: last timestamp written (time_jitter full)
        self.muxer = Fmp4Muxer() if mp4 else None
        self.last_fragment = 0
        self.handle: dvr_files.RecordingFile | None = None  # set by the open job, in the lane


class DvrRecorder:
    """One stream's DVR (see the module docstring)."""

    kind = "dvr"

    def __init__(self, ctx: ConnectionContext, src: LiveSource, config: DvrConfig) -> None:
        self.ctx = ctx
        self.source = src
        self.config = config
        self.vhost, self.app, self.stream = src.key.split("/", 2)
        pub = src.publisher
        params = dict(getattr(pub, "params", None) or {})
        self.request = HookRequest(getattr(pub, "cid", ""), getattr(pub, "ip", ""), self.vhost, self.app,
                                   getattr(pub, "tc_url", ""), self.stream, tuple(params.items()))
        self.state = DvrState.WAITING
        self.error = ""
        self.lane: DiskLane = ctx.disk.lane(f"dvr {src.key}", MAX_PENDING)
        self.reader = FlvReader(check_previous_tag_size=False)
        self.reader.feed(FLV_HEADER())
        self.meta: bytes | None = None
        self.video_sh: bytes | None = None
        self.audio_sh: bytes | None = None
        self.file: _File | None = None
        self.last_raw = -1  # the last media timestamp as it came (32 bits)
        self.wraps = 0
        self.session: tuple[float, int] | None = None  # (wall ms, timestamp) of the first file's start
        self.files = 0
        self.bytes = 0
        self.last_file = ""
        self.hook_task: asyncio.Task[None] | None = None
        self.consumer: Consumer | None = src.add_consumer(self, FLV, internal=True, label="dvr")

    # ---- Recording -------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.state in (DvrState.STOPPED, DvrState.ERROR):
            return
        self._detach()
        self._flush([])
        self._close_file()
        self.state = DvrState.STOPPED

    def reconfigure(self, vhost: VhostConfig) -> bool:
        config = vhost.dvr
        if not config.enabled or not config.applies(self.app, self.stream):
            return False
        self.config = config  # plan, duration, path: from the next file on
        return True

    def stats(self) -> dict[str, Any]:
        return {"state": self.state.value, "plan": self.config.plan, "file": self.file.final if self.file else "",
                "files": self.files, "bytes": self.bytes, "last_file": self.last_file, "error": self.error}

    # ---- Sink ------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def writelines(self, data: list[bytes]) -> None:
        if self.state in (DvrState.STOPPED, DvrState.ERROR):
            return
        out: list[bytes] = []
        for part in data:
            for tag in self.reader.feed(part):
                self._on_tag(tag, out)
        if out:
            self._append(b"".join(out))

    def on_publish(self) -> None:
        pass

    def on_unpublish(self) -> None:
        self.stop()

    def close_slow(self, reason: str) -> None:
        self._fail(f"fell behind: {reason}")

    # ---- tags ------------------------------------------------------------------------------------

    def _on_tag(self, tag: FlvTag, out: list[bytes]) -> None:
        kind, payload = tag.tag_type, tag.payload
        if kind == TAG_SCRIPT:
            self.meta = payload
            return
        if kind == TAG_VIDEO and video_is_sequence_header(payload):
            changed = self.video_sh != payload  # a new track counts: the moov must describe it
            self.video_sh = payload
            self._header_in_file(kind, payload, changed, out)
            return
        if kind == TAG_AUDIO and audio_is_sequence_header(payload):
            changed = self.audio_sh != payload
            self.audio_sh = payload
            self._header_in_file(kind, payload, changed, out)
            return
        if kind not in (TAG_AUDIO, TAG_VIDEO):
            return
        keyframe = starts_picture(kind, payload)
        ts = self._unwrap(tag.timestamp)
        f = self.file
        if f is not None and self.config.plan == "segment" and f.first_ts >= 0:
            lasted = ts - f.base_ts - f.first_ts
            cut_here = keyframe or not self.config.wait_keyframe or self.video_sh is None
            if lasted >= self.config.duration * 1000 and cut_here:
                self._flush(out)
                self._close_file()
                f = None
        if f is None:
            if self.video_sh is not None and not keyframe:
                return  # a file starts on a keyframe
            f = self._open_file(ts, out)
            if f is None:
                return
        self._write_frame(f, kind, ts, payload, keyframe, out)

    def _unwrap(self, ts: int) -> int:
        """FLV time is 32 bits (49.7 days): a recording that runs past it goes on counting."""
        if self.last_raw >= 0 and ts < self.last_raw - 0x80000000:
            self.wraps += 1 << 32
        self.last_raw = ts
        return ts + self.wraps

    def _header_in_file(self, kind: int, payload: bytes, changed: bool, out: list[bytes]) -> None:
        f = self.file
        if f is None:
            return
        if f.muxer is not None:
            if changed:  # a new track or configuration: a new moov, so a new file, from the next keyframe
                self._flush(out)
                self._close_file()
            return
        out.append(encode_tag(kind, self._timestamp(f, kind, f.base_ts + max(f.first_ts, 0)), payload))

    def _timestamp(self, f: _File, kind: int, ts: int) -> int:
        jitter = self.config.time_jitter
        if jitter == "off":
            return ts
        out = max(ts - f.base_ts, 0)
        if jitter == "full":
            out = max(out, f.last.get(kind, 0))
            f.last[kind] = out
        return out

    def _write_frame(self, f: _File, kind: int, ts: int, payload: bytes, keyframe: bool, out: list[bytes]) -> None:
        at = self._timestamp(f, kind, ts)
        if f.first_ts < 0:
            f.first_ts = at if self.config.time_jitter == "off" else ts - f.base_ts
        if f.muxer is None:
            out.append(encode_tag(kind, at, payload))
            return
        f.muxer.push(kind, at, payload)
        if keyframe or at - f.last_fragment >= FRAGMENT_MS:
            fragment = f.muxer.fragment()
            if fragment:
                out.append(fragment)
                f.last_fragment = at

    def _flush(self, out: list[bytes]) -> None:
        """What the current file still holds goes out before it is closed."""
        f = self.file
        if f is not None and f.muxer is not None:
            out.append(f.muxer.flush())
        if out:
            self._append(b"".join(out))
            out.clear()

    # ---- files -----------------------------------------------------------------------------------

    def _path(self, now: float) -> str:
        template = dvr_files.dvr_template(self.config.path)
        root = dvr_files.dvr_root(self.config.path)
        relative = expand(template[len(root):].lstrip("/"), vhost=self.vhost, app=self.app, stream=self.stream,
                          now=now)
        return place_under(root, relative)

    def _open_file(self, ts: int, out: list[bytes]) -> _File | None:
        now = time.time()
        try:
            final = self._path(now)
        except UnsafePath as e:
            self._fail(f"dvr_path {e}")
            return None
        mp4 = dvr_files.container_of(final) == ".mp4"
        # the files of one publish sit end to end on the wall clock: each starts where the
        # publish's media time says, not when its file happened to be opened
        if self.session is None:
            self.session = (now * 1000, ts)
        info = RecordingInfo(self.vhost, self.app, self.stream, self.session[0] + ts - self.session[1])
        f = _File(final, info, 0 if self.config.time_jitter == "off" else ts, mp4)
        if f.muxer is None:
            values = metadata_values(self.meta)
            out.append(metadata_head(values, info, has_audio=self.audio_sh is not None,
                                     has_video=self.video_sh is not None))
            for kind, header in ((TAG_VIDEO, self.video_sh), (TAG_AUDIO, self.audio_sh)):
                if header is not None:
                    out.append(encode_tag(kind, 0 if self.config.time_jitter != "off" else ts, header))
        else:
            for kind, header in ((TAG_VIDEO, self.video_sh), (TAG_AUDIO, self.audio_sh)):
                if header is not None:
                    f.muxer.push(kind, 0, header)
            video, audio = f.muxer.frames.video, f.muxer.frames.audio
            if video is None and audio is None:
                return None  # nothing an MP4 can carry yet
            values = {k[3:]: v for k, v in srv_values(info).items()}
            out.append(file_head(video, audio, values))
        def open_file() -> None:
            f.handle = dvr_files.RecordingFile(final)

        try:
            self._submit(open_file, None)
        except LaneFull as e:
            self._fail(str(e))
            return None
        self.file = f
        self.state = DvrState.RECORDING
        log.log(srvlog.TRACE, "dvr %s: recording to %s", self.source.key, final)
        return f

    def _append(self, data: bytes) -> None:
        f = self.file
        if f is None:
            return
        self.bytes += len(data)

        def append() -> None:
            if f.handle is not None:
                f.handle.append(data)

        try:
            self._submit(append, None)
        except LaneFull as e:
            self._fail(f"the disk is not keeping up ({e})")

    @staticmethod
    def _finish_job(f: _File) -> Any:
        def finish() -> dvr_files.DvrFile | None:
            handle = f.handle
            if handle is None:
                return None
            handle.close()
            return dvr_files.finish(handle.temp, handle.final)

        return finish

    def _close_file(self) -> None:
        f, self.file = self.file, None
        if f is None:
            return
        self.lane.max_pending += 1  # a file is finished whatever is queued before it
        try:
            self._submit(self._finish_job(f), self._finished)
        finally:
            self.lane.max_pending -= 1

    def _submit(self, job: Any, then: Any) -> None:
        future = self.lane.submit(job)

        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            error = fut.exception()
            if error is not None and self.state is DvrState.STOPPED:
                log.error("dvr %s: finishing the last file failed: %s: %s", self.source.key,
                          type(error).__name__, error)
            elif error is not None:
                self._fail(f"{type(error).__name__}: {error}")
            elif then is not None:
                then(fut.result())

        future.add_done_callback(done)

    def _finished(self, done: dvr_files.DvrFile | None) -> None:
        if done is None:
            return
        self.files += 1
        self.last_file = done.path
        log.log(srvlog.TRACE, "dvr %s: %s closed, %.3fs, %d bytes", self.source.key, done.path, done.duration,
                done.size)
        self.hook_task = hooks.notify(self.ctx, "on_dvr", self.request, log, after=self.hook_task,
                                      cwd=os.getcwd(), file=done.path)
        keep = self.config.keep
        if keep != (0.0, 0):
            root, vhost = dvr_files.dvr_root(self.config.path), self.vhost
            self.ctx.disk.run(lambda: dvr_files.enforce_keep(root, vhost, keep)).add_done_callback(_log_removed)

    def _fail(self, reason: str) -> None:
        if self.state in (DvrState.ERROR, DvrState.STOPPED):
            return
        self.state = DvrState.ERROR
        self.error = reason
        log.error("dvr %s: recording stopped: %s", self.source.key, reason)
        self._detach()
        f, self.file = self.file, None
        if f is not None:  # what reached the disk is finished (an MP4 needs no room for that)
            self.lane.max_pending += 1
            fut = self.lane.submit(self._finish_job(f))
            self.lane.max_pending -= 1
            fut.add_done_callback(_salvaged)

    def _detach(self) -> None:
        c, self.consumer = self.consumer, None
        if c is not None:
            self.source.remove_consumer(c)


def _log_removed(fut: asyncio.Future[list[dvr_files.DvrFile]]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    for e in fut.result():
        log.log(srvlog.TRACE, "dvr: dvr_keep removed %s (%.0fs, %d bytes)", e.path, e.duration, e.size)


def _salvaged(fut: asyncio.Future[dvr_files.DvrFile | None]) -> None:
    if fut.cancelled():
        return
    error = fut.exception()
    if error is not None:
        log.error("dvr: the file of a stopped recording could not be finished: %s", error)
    elif fut.result() is not None:
        done = fut.result()
        assert done is not None
        # the error was logged once already (one line per event): this detail is info
        log.log(srvlog.INFO, "dvr: kept %s up to the error (%.3fs, %d bytes)", done.path, done.duration, done.size)


def recover(ctx: ConnectionContext) -> None:
    """At a worker's start, off the loop: finish the files crashed writers left (srv.app.dvr_files)."""
    roots = sorted({dvr_files.dvr_root(v.dvr.path) for v in ctx.config.vhosts.values() if v.dvr.enabled})
    if not roots:
        return

    def job() -> None:
        for root in roots:
            dvr_files.recover_under(root)

    ctx.disk.run(job)
