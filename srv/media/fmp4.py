"""Sans-I/O fragmented MP4 (CMAF, ISO/IEC 14496-12 / 23000-19) muxer for HLS: FLV messages in,
bytes out. One small writer function per box, as MediaMTX's mediacommon lays them out.

One `Fmp4Muxer` lives as long as a published stream:
- `push(tag_type, timestamp, payload)` takes one message (sequence headers update the tracks,
  `frames.generation` tells when they changed and the init segment must be written again);
- `init_segment()` is `ftyp` + `moov` (`mvhd`, one `trak` per track with its sample entry:
  avc1/avcC, hvc1/hvcC, av01/av1C, mp4a/esds, Opus/dOps; `mvex` with a `trex` per track);
- `fragment()` is one `moof` (`mfhd`, per track `traf`: `tfhd`, `tfdt`, `trun` with each
  sample's duration, size, flags and composition offset) + `mdat` with every sample whose
  duration is known, i.e. all but the newest of each track: a sample lasts until the next
  sample's DTS. So to cut a segment on a keyframe, push the keyframe and then call
  `fragment()`: the keyframe is held back and starts the next one. `flush()` ends a stream:
  the held samples go out too, each lasting as long as the sample before it.

Track 1 is video (timescale 90 kHz), track 2 audio (timescale = its sample rate). A video
message with the DTS of the sample before it is the same picture (its NAL units are
appended); any other message whose DTS does not advance is dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from srv.media.frames import AudioTrack, Frame, FrameReader, VideoTrack

VIDEO_TRACK_ID = 1
AUDIO_TRACK_ID = 2
VIDEO_TIMESCALE = 90000
MOVIE_TIMESCALE = 1000

SAMPLE_SYNC = 0x02000000  # sample_depends_on = 2 (an I picture / an audio frame)
SAMPLE_NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample

_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800  # offset, dur, size, flags, cts
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_SAMPLE_ENTRY_TYPES = {"H264": b"avc1", "HEVC": b"hvc1", "AV1": b"av01"}
_CONFIG_BOX_TYPES = {"H264": b"avcC", "HEVC": b"hvcC", "AV1": b"av1C"}


# --- boxes ---------------------------------------------------------------------------------


def box(kind: bytes, *parts: bytes) -> bytes:
    return struct.pack(">I", 8 + sum(len(p) for p in parts)) + kind + b"".join(parts)


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *parts)


def ftyp() -> bytes:
    return box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5", b"iso6", b"mp41", b"cmfc")


def mvhd(next_track_id: int) -> bytes:
    return full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),  # creation, modification, timescale, duration
        struct.pack(">IH10x", 0x00010000, 0x0100),  # rate 1.0, volume 1.0, reserved
        _MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", next_track_id),
    )


def tkhd(track_id: int, width: int, height: int, audio: bool) -> bytes:
    return full_box(
        b"tkhd", 0, 3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),  # creation, modification, id, reserved, duration
        struct.pack(">8xHHHH", 0, 0, 0x0100 if audio else 0, 0),  # layer, group, volume, reserved
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )


def mdhd(timescale: int) -> bytes:
    return full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))  # "und"


def hdlr(handler: bytes, name: bytes) -> bytes:
    return full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name + b"\x00")


def dinf() -> bytes:
    return box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))


def stbl(sample_entry: bytes) -> bytes:
    no_entries = struct.pack(">I", 0)
    return box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, no_entries),
        full_box(b"stsc", 0, 0, no_entries),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, no_entries),
    )


def visual_sample_entry(track: VideoTrack) -> bytes:
    """avc1 / hvc1 / av01 with the decoder configuration record as it came from the publisher."""
    return box(
        _SAMPLE_ENTRY_TYPES[track.codec],
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HHIIIH", track.width, track.height, 0x00480000, 0x00480000, 0, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        box(_CONFIG_BOX_TYPES[track.codec], track.record),
    )


def _audio_sample_entry(kind: bytes, track: AudioTrack, config: bytes) -> bytes:
    rate = track.sample_rate if track.sample_rate < 0x10000 else 0
    return box(
        kind,
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(8),  # reserved
        struct.pack(">HHHH", track.channels, 16, 0, 0),  # channelcount, samplesize, pre_defined
        struct.pack(">I", rate << 16),
        config,
    )


def descriptor(tag: int, *parts: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3), its size in the 4-byte expandable form."""
    size = sum(len(p) for p in parts)
    head = bytes((tag, 0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F, size & 0x7F))
    return head + b"".join(parts)


def esds(track_id: int, audio_specific_config: bytes) -> bytes:
    decoder_config = descriptor(
        4,
        bytes((0x40, 0x15)),  # objectTypeIndication MPEG-4 audio, streamType audio (5) << 2 | 1
        bytes(3), struct.pack(">II", 0, 0),  # bufferSizeDB, maxBitrate, avgBitrate
        descriptor(5, audio_specific_config),
    )
    es = descriptor(3, struct.pack(">HB", track_id, 0), decoder_config, descriptor(6, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def dops(opus_head: bytes) -> bytes:
    """dOps (Opus in ISOBMFF, 4.3.2) from an OpusHead: the same fields, big-endian, version 0."""
    channels = opus_head[9]
    pre_skip, input_rate, gain = struct.unpack_from("<HIh", opus_head, 10)
    family = opus_head[18]
    body = struct.pack(">BBHIhB", 0, channels, pre_skip, input_rate, gain, family)
    if family != 0:
        body += bytes(opus_head[19 : 21 + channels])  # stream count, coupled count, mapping
    return box(b"dOps", body)


def audio_sample_entry(track: AudioTrack, track_id: int) -> bytes:
    if track.codec == "Opus":
        return _audio_sample_entry(b"Opus", track, dops(track.config))
    return _audio_sample_entry(b"mp4a", track, esds(track_id, track.config))


def trak_video(track: VideoTrack) -> bytes:
    return box(
        b"trak",
        tkhd(VIDEO_TRACK_ID, track.width, track.height, audio=False),
        box(
            b"mdia",
            mdhd(VIDEO_TIMESCALE),
            hdlr(b"vide", b"VideoHandler"),
            box(b"minf", full_box(b"vmhd", 0, 1, bytes(8)), dinf(), stbl(visual_sample_entry(track))),
        ),
    )


def trak_audio(track: AudioTrack) -> bytes:
    return box(
        b"trak",
        tkhd(AUDIO_TRACK_ID, 0, 0, audio=True),
        box(
            b"mdia",
            mdhd(track.sample_rate),
            hdlr(b"soun", b"SoundHandler"),
            box(b"minf", full_box(b"smhd", 0, 0, bytes(4)), dinf(),
                stbl(audio_sample_entry(track, AUDIO_TRACK_ID))),
        ),
    )


def trex(track_id: int) -> bytes:
    return full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))


def init_segment(video: VideoTrack | None, audio: AudioTrack | None) -> bytes:
    traks, trexes = [], []
    if video is not None:
        traks.append(trak_video(video))
        trexes.append(trex(VIDEO_TRACK_ID))
    if audio is not None:
        traks.append(trak_audio(audio))
        trexes.append(trex(AUDIO_TRACK_ID))
    return ftyp() + box(b"moov", mvhd(AUDIO_TRACK_ID + 1), *traks, box(b"mvex", *trexes))


@dataclass(slots=True)
class Sample:
    """One sample: times in its track's timescale."""

    dts: int
    cts: int
    sync: bool
    data: bytes
    duration: int = 0


@dataclass(slots=True)
class TrackFragment:
    track_id: int
    samples: list[Sample] = field(default_factory=list)


def trun(samples: list[Sample], data_offset: int) -> bytes:
    entries = b"".join(
        struct.pack(">IIIi", s.duration, len(s.data), SAMPLE_SYNC if s.sync else SAMPLE_NON_SYNC, s.cts)
        for s in samples
    )
    return full_box(b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", len(samples), data_offset), entries)


def traf(fragment: TrackFragment, data_offset: int) -> bytes:
    return box(
        b"traf",
        full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", fragment.track_id)),
        full_box(b"tfdt", 1, 0, struct.pack(">Q", fragment.samples[0].dts)),
        trun(fragment.samples, data_offset),
    )


def moof(sequence_number: int, fragments: list[TrackFragment], mdat_offset: int) -> bytes:
    """`mdat_offset`: where the mdat's payload starts counted from the moof's first byte."""
    trafs = []
    offset = mdat_offset
    for fragment in fragments:
        trafs.append(traf(fragment, offset))
        offset += sum(len(s.data) for s in fragment.samples)
    return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number)), *trafs)


def media_segment(sequence_number: int, fragments: list[TrackFragment]) -> bytes:
    """moof + mdat. The moof is built once to learn its size, then with the data offsets."""
    fragments = [f for f in fragments if f.samples]
    if not fragments:
        return b""
    size = len(moof(sequence_number, fragments, 0))
    head = moof(sequence_number, fragments, size + 8)
    return head + box(b"mdat", *(s.data for f in fragments for s in f.samples))


# --- the muxer -----------------------------------------------------------------------------


class _TrackSamples:
    """Samples of one track: `ready` have their duration, `held` waits for the next DTS."""

    __slots__ = ("track_id", "timescale", "held", "ready", "last_duration")

    def __init__(self, track_id: int) -> None:
        self.track_id = track_id
        self.timescale = 0
        self.held: Sample | None = None
        self.ready: list[Sample] = []
        self.last_duration = 0

    def add(self, frame: Frame, merge_same_dts: bool) -> None:
        scale = self.timescale
        sample = Sample(frame.dts * scale // 1000, frame.cts * scale // 1000, frame.keyframe, frame.data)
        held = self.held
        if held is not None:
            duration = sample.dts - held.dts
            if duration <= 0:
                if duration == 0 and merge_same_dts:
                    held.data += sample.data
                    held.sync = held.sync or sample.sync
                return
            held.duration = self.last_duration = duration
            self.ready.append(held)
        self.held = sample

    def release_held(self) -> None:
        held = self.held
        if held is not None:
            held.duration = self.last_duration
            self.ready.append(held)
            self.held = None

    def take(self) -> TrackFragment:
        fragment = TrackFragment(self.track_id, self.ready)
        self.ready = []
        return fragment


class Fmp4Muxer:
    """One published stream's fMP4 output (see the module docstring)."""

    def __init__(self) -> None:
        self.frames = FrameReader()
        self.sequence_number = 0
        self._video = _TrackSamples(VIDEO_TRACK_ID)
        self._video.timescale = VIDEO_TIMESCALE
        self._audio = _TrackSamples(AUDIO_TRACK_ID)

    def push(self, tag_type: int, timestamp: int, payload: bytes) -> None:
        frame = self.frames.read(tag_type, timestamp, payload)
        if frame is not None:
            self.push_frame(frame)

    def push_frame(self, frame: Frame) -> None:
        """A frame `frames` answered (read by a caller that decides the cuts first)."""
        if frame.is_video:
            self._video.add(frame, merge_same_dts=True)
            return
        audio = self.frames.audio
        assert audio is not None  # FrameReader answers frames of known tracks only
        if self._audio.timescale != audio.sample_rate:
            self._audio.release_held()  # a new rate: what is held is in the old timescale
            self._audio.timescale = audio.sample_rate
        self._audio.add(frame, merge_same_dts=False)

    def init_segment(self) -> bytes:
        """ftyp + moov for the tracks known so far (b"" before any sequence header)."""
        if self.frames.video is None and self.frames.audio is None:
            return b""
        return init_segment(self.frames.video, self.frames.audio)

    def fragment(self) -> bytes:
        """moof + mdat of the samples whose duration is known; b"" if there are none."""
        segment = media_segment(self.sequence_number + 1, [self._video.take(), self._audio.take()])
        if segment:
            self.sequence_number += 1
        return segment

    def flush(self) -> bytes:
        """The last fragment of a stream: everything, the newest samples included."""
        self._video.release_held()
        self._audio.release_held()
        return self.fragment()
