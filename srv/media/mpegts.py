"""Sans-I/O MPEG-TS muxer (ISO/IEC 13818-1) for HLS segments: FLV messages in, bytes out.

One `TsMuxer` lives as long as a published stream: `push(tag_type, timestamp, payload)` answers
the TS packets of one message (b"" for a message that is no frame), `start_segment()` the
PAT and PMT a new segment file starts with. Continuity counters run on across segments, as
a player reading them back to back expects; a track that appears or changes mid-segment
gets a new PMT version before its next frame.

What goes in the packets:
- one program (number 1): PMT on PID 0x1000, video on 0x100, audio on 0x101;
- PCR on the video PID in every video PES's first packet (on the audio PID when there is no
  video), equal to that frame's DTS, as SRS writes it; random_access_indicator on keyframes;
- PES with PTS (and DTS when they differ), 90 kHz = FLV milliseconds x 90, modulo 2^33;
- H.264 (stream_type 0x1B) and HEVC (0x24) as Annex B: an access unit delimiter first, then
  the parameter sets of the sequence header before every keyframe that does not carry its own;
- AAC (0x0F) as ADTS, one PES per frame.
AV1 and Opus have no place in this muxer: their sequence header raises `UnsupportedCodec`
(the HLS writer then uses fMP4). Other codecs and garbage are dropped (see `FrameReader`).
"""

from __future__ import annotations

from srv.media.audio_config import AdtsFields, adts_fields
from srv.media.frames import AudioTrack, Frame, FrameReader, VideoTrack

PACKET_SIZE = 188
PID_PAT = 0x0000
PID_PMT = 0x1000
PID_VIDEO = 0x0100
PID_AUDIO = 0x0101
PROGRAM_NUMBER = 1
TRANSPORT_STREAM_ID = 1
STREAM_ID_VIDEO = 0xE0
STREAM_ID_AUDIO = 0xC0
STREAM_TYPES = {"H264": 0x1B, "HEVC": 0x24, "AAC": 0x0F}

_TS_HZ = 90  # per millisecond
_TIME_MASK = (1 << 33) - 1
_AUD = {"H264": b"\x00\x00\x00\x01\x09\xf0", "HEVC": b"\x00\x00\x00\x01\x46\x01\x50"}
_START_CODE = b"\x00\x00\x00\x01"


class UnsupportedCodec(ValueError):
    """The stream carries a codec MPEG-TS segments cannot (AV1, Opus, an AAC config without
    an ADTS form). The message says which and what to use instead."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of a PSI section (polynomial 0x04C11DB7, init all ones, no reflection,
    no final xor): a section followed by its CRC checks to 0."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def unsupported_reason(video: VideoTrack | None, audio: AudioTrack | None) -> str | None:
    """Why these tracks cannot go in MPEG-TS, or None if they can."""
    if video is not None and video.codec not in STREAM_TYPES:
        return f"{video.codec} video cannot be carried in MPEG-TS segments; use fMP4 (hls_use_fmp4 on)"
    if audio is not None:
        if audio.codec not in STREAM_TYPES:
            return f"{audio.codec} audio cannot be carried in MPEG-TS segments; use fMP4 (hls_use_fmp4 on)"
        if adts_fields(audio.config) is None:
            return "this AAC configuration has no ADTS form for MPEG-TS segments; use fMP4 (hls_use_fmp4 on)"
    return None


def encode_timestamp(prefix: int, value: int) -> bytes:
    """A 33-bit PTS or DTS in the PES header's 5-byte form with its 4-bit prefix."""
    value &= _TIME_MASK
    return bytes((
        (prefix << 4) | ((value >> 29) & 0x0E) | 1,
        (value >> 22) & 0xFF,
        ((value >> 14) & 0xFE) | 1,
        (value >> 7) & 0xFF,
        ((value << 1) & 0xFE) | 1,
    ))


def encode_pcr(base: int) -> bytes:
    """Program clock reference: 33-bit base (90 kHz), 6 reserved bits, 9-bit extension 0."""
    base &= _TIME_MASK
    return bytes((
        (base >> 25) & 0xFF,
        (base >> 17) & 0xFF,
        (base >> 9) & 0xFF,
        (base >> 1) & 0xFF,
        ((base & 1) << 7) | 0x7E,
        0,
    ))


def pes_header(stream_id: int, pts: int, dts: int, payload_size: int) -> bytes:
    """PES packet header with PTS, and DTS when it differs. The packet length is 0
    ("unbounded", allowed for video) when it does not fit 16 bits."""
    if pts == dts:
        flags, stamps = 0x80, encode_timestamp(0x2, pts)
    else:
        flags, stamps = 0xC0, encode_timestamp(0x3, pts) + encode_timestamp(0x1, dts)
    length = 3 + len(stamps) + payload_size
    if length > 0xFFFF:
        length = 0
    return b"\x00\x00\x01" + bytes((stream_id, length >> 8, length & 0xFF, 0x80, flags, len(stamps))) + stamps


def adts_header(fields: AdtsFields, raw_size: int) -> bytes:
    """The 7-byte ADTS header (MPEG-4, no CRC) of one raw AAC frame."""
    length = 7 + raw_size
    return bytes((
        0xFF,
        0xF1,
        (fields.profile << 6) | (fields.sample_rate_index << 2) | (fields.channel_config >> 2),
        ((fields.channel_config & 3) << 6) | (length >> 11),
        (length >> 3) & 0xFF,
        ((length & 7) << 5) | 0x1F,
        0xFC,
    ))


def psi_section(table_id: int, table_id_extension: int, version: int, body: bytes) -> bytes:
    """A long-form PSI section (PAT, PMT) with its CRC."""
    length = 5 + len(body) + 4  # after the length field: extension..last_section, body, CRC
    head = bytes((
        table_id,
        0xB0 | (length >> 8),
        length & 0xFF,
        table_id_extension >> 8,
        table_id_extension & 0xFF,
        0xC1 | ((version & 0x1F) << 1),
        0,
        0,
    ))
    section = head + body
    return section + crc32_mpeg2(section).to_bytes(4, "big")


def pat_section(pmt_pid: int = PID_PMT, version: int = 0) -> bytes:
    body = PROGRAM_NUMBER.to_bytes(2, "big") + bytes((0xE0 | pmt_pid >> 8, pmt_pid & 0xFF))
    return psi_section(0x00, TRANSPORT_STREAM_ID, version, body)


def pmt_section(pcr_pid: int, streams: list[tuple[int, int]], version: int = 0) -> bytes:
    """`streams`: (stream_type, elementary PID) pairs."""
    body = bytearray((0xE0 | pcr_pid >> 8, pcr_pid & 0xFF, 0xF0, 0x00))
    for stream_type, pid in streams:
        body += bytes((stream_type, 0xE0 | pid >> 8, pid & 0xFF, 0xF0, 0x00))
    return psi_section(0x02, PROGRAM_NUMBER, version, bytes(body))


def annexb_access_unit(track: VideoTrack, data: bytes, keyframe: bool) -> bytes:
    """AVCC/HVCC length-prefixed NAL units to Annex B with an AUD first and, on a keyframe
    without in-band parameter sets, the sequence header's. Delimiters already in the data are
    dropped (ours comes first); a length that runs past the end ends the unit there."""
    hevc = track.codec == "HEVC"
    aud_type, sps_type = (35, 33) if hevc else (9, 7)
    size = track.nal_length_size
    nals: list[bytes] = []
    has_sps = False
    pos, end = 0, len(data)
    while pos + size <= end:
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        if length == 0 or pos + length > end:
            break
        nal_type = (data[pos] >> 1) & 0x3F if hevc else data[pos] & 0x1F
        if nal_type == sps_type:
            has_sps = True
        if nal_type != aud_type:
            nals.append(data[pos : pos + length])
        pos += length
    if not nals:
        return b""
    parts = [_AUD[track.codec]]
    if keyframe and not has_sps:
        parts += [_START_CODE + nal for nal in track.parameter_sets]
    parts += [_START_CODE + nal for nal in nals]
    return b"".join(parts)


class TsMuxer:
    """One published stream's MPEG-TS output (see the module docstring)."""

    def __init__(self) -> None:
        self.frames = FrameReader()
        self._cc: dict[int, int] = {}
        self._tables_generation = -1  # the track generation the last PMT described
        self._pmt_version = -1
        self._adts: AdtsFields | None = None

    def push(self, tag_type: int, timestamp: int, payload: bytes) -> bytes:
        """TS packets of one published message, b"" if it is no frame. Raises
        `UnsupportedCodec` once a track is AV1 or Opus (or AAC without an ADTS form)."""
        frame = self.frames.read(tag_type, timestamp, payload)
        if frame is None:
            return b""
        return self.push_frame(frame)

    def push_frame(self, frame: Frame) -> bytes:
        """TS packets of a frame `frames` answered (a caller that reads the frame first, to
        decide where a segment ends, hands it over here)."""
        out = b""
        if self.frames.generation != self._tables_generation:
            out = self.start_segment()
        return out + (self._video(frame) if frame.is_video else self._audio(frame))

    def start_segment(self) -> bytes:
        """PAT and PMT (one packet each) for the tracks known so far: what each segment file
        starts with. The next `push` should be a keyframe."""
        video, audio = self.frames.video, self.frames.audio
        reason = unsupported_reason(video, audio)
        if reason is not None:
            raise UnsupportedCodec(reason)
        if self._tables_generation != self.frames.generation:
            self._tables_generation = self.frames.generation
            self._pmt_version = (self._pmt_version + 1) & 0x1F
            self._adts = adts_fields(audio.config) if audio is not None else None
        streams = []
        if video is not None:
            streams.append((STREAM_TYPES[video.codec], PID_VIDEO))
        if audio is not None:
            streams.append((STREAM_TYPES[audio.codec], PID_AUDIO))
        pcr_pid = PID_VIDEO if video is not None or audio is None else PID_AUDIO
        pmt = pmt_section(pcr_pid, streams, self._pmt_version)
        return self._section_packet(PID_PAT, pat_section()) + self._section_packet(PID_PMT, pmt)

    def _video(self, frame: Frame) -> bytes:
        track = self.frames.video
        assert track is not None  # FrameReader answers frames of known tracks only
        es = annexb_access_unit(track, frame.data, frame.keyframe)
        if not es:
            return b""
        dts = frame.dts * _TS_HZ
        pts = dts + frame.cts * _TS_HZ
        header = pes_header(STREAM_ID_VIDEO, pts, dts, len(es))
        return self._packets(PID_VIDEO, header + es, dts, frame.keyframe)

    def _audio(self, frame: Frame) -> bytes:
        fields = self._adts
        if fields is None or 7 + len(frame.data) > 0x1FFF:
            return b""
        es = adts_header(fields, len(frame.data)) + frame.data
        pts = frame.dts * _TS_HZ
        audio_only = self.frames.video is None
        header = pes_header(STREAM_ID_AUDIO, pts, pts, len(es))
        return self._packets(PID_AUDIO, header + es, pts if audio_only else None, audio_only)

    def _next_cc(self, pid: int) -> int:
        cc = self._cc.get(pid, -1) + 1 & 0x0F
        self._cc[pid] = cc
        return cc

    def _section_packet(self, pid: int, section: bytes) -> bytes:
        payload = b"\x00" + section  # pointer_field
        header = bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | self._next_cc(pid)))
        return header + payload + b"\xff" * (PACKET_SIZE - 4 - len(payload))

    def _packets(self, pid: int, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        """Split one PES into 188-byte packets; the first carries PCR and the random access
        flag in its adaptation field, the last is filled up with adaptation field stuffing."""
        out = []
        pos, end = 0, len(pes)
        first = True
        while pos < end:
            flags = 0
            extra = b""
            if first:
                if pcr is not None:
                    flags |= 0x10
                    extra = encode_pcr(pcr)
                if random_access:
                    flags |= 0x40
            af_size = (2 + len(extra)) if flags else 0  # length byte, flags byte, PCR
            room = PACKET_SIZE - 4 - af_size
            chunk = pes[pos : pos + room]
            pos += len(chunk)
            if len(chunk) < room:  # stuff the adaptation field out to the packet's end
                af_size += room - len(chunk)
            if af_size == 1:
                adaptation = b"\x00"
            elif af_size:
                stuffing = af_size - 2 - len(extra)
                adaptation = bytes((af_size - 1, flags)) + extra + b"\xff" * stuffing
            else:
                adaptation = b""
            control = 0x30 if adaptation else 0x10
            pusi = 0x40 if first else 0
            out.append(bytes((0x47, pusi | pid >> 8, pid & 0xFF, control | self._next_cc(pid))))
            out.append(adaptation)
            out.append(chunk)
            first = False
        return b"".join(out)
