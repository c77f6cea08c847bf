"""Audio codec configurations carried in sequence headers: AAC AudioSpecificConfig
(ISO/IEC 14496-3), OpusHead (RFC 7845) and FLAC STREAMINFO.

Pure functions over untrusted bytes: each answers an `AudioConfig` or None, never raises.
"""

from __future__ import annotations

from typing import NamedTuple

AAC_SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
# channel_configuration -> channel count (0 means "in a program config element": unknown).
_AAC_CHANNELS = (0, 1, 2, 3, 4, 5, 6, 8)

AAC_OBJECT_NAMES: dict[int, str] = {1: "Main", 2: "LC", 3: "SSR", 5: "HE", 29: "HEv2"}

_AAC_SBR = 5
_AAC_PS = 29


class AudioConfig(NamedTuple):
    """Decoder output as a player sees it. `object_type` is the AAC audio object type
    (2 LC, 5 HE-AAC, 29 HE-AACv2) and 0 for codecs that have none."""

    object_type: int
    sample_rate: int
    channels: int


class _Bits:
    __slots__ = ("value", "left")

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def read(self, n: int) -> int:
        if n > self.left:
            raise _Truncated
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)


class _Truncated(Exception):
    pass


def _object_type(bits: _Bits) -> int:
    object_type = bits.read(5)
    if object_type == 31:
        object_type = 32 + bits.read(6)
    return object_type


def _sample_rate(bits: _Bits) -> int:
    index = bits.read(4)
    if index == 15:
        return bits.read(24)
    if index >= len(AAC_SAMPLE_RATES):
        raise _Truncated
    return AAC_SAMPLE_RATES[index]


def parse_audio_specific_config(data: bytes) -> AudioConfig | None:
    """Parse an AAC AudioSpecificConfig (the body of an AAC sequence header).

    For HE-AAC (explicit SBR signalling) the sample rate is the SBR output rate, which is
    what ffprobe and players report; HE-AACv2 mono core is reported as stereo (PS).
    """
    if len(data) < 2:
        return None
    try:
        bits = _Bits(bytes(data[:16]))
        object_type = _object_type(bits)
        sample_rate = _sample_rate(bits)
        channel_config = bits.read(4)
        if object_type in (_AAC_SBR, _AAC_PS):
            sample_rate = _sample_rate(bits)
            if object_type == _AAC_PS and channel_config == 1:
                channel_config = 2
    except _Truncated:
        return None
    if object_type == 0 or sample_rate == 0 or channel_config >= len(_AAC_CHANNELS):
        return None
    return AudioConfig(object_type, sample_rate, _AAC_CHANNELS[channel_config])


def parse_opus_head(data: bytes) -> AudioConfig | None:
    """Parse an OpusHead identification header. Opus always decodes at 48 kHz."""
    if len(data) < 19 or data[:8] != b"OpusHead" or data[9] == 0:
        return None
    return AudioConfig(0, 48000, data[9])


def parse_flac_streaminfo(data: bytes) -> AudioConfig | None:
    """Parse FLAC STREAMINFO, bare (34 bytes) or behind "fLaC" and a metadata block header."""
    if data[:4] == b"fLaC":
        data = data[8:]
    if len(data) < 34:
        return None
    sample_rate = (data[10] << 12) | (data[11] << 4) | (data[12] >> 4)
    channels = ((data[12] >> 1) & 0x07) + 1
    if sample_rate == 0:
        return None
    return AudioConfig(0, sample_rate, channels)


class AdtsFields(NamedTuple):
    """What an ADTS header (ISO/IEC 13818-7 / 14496-3 1.A.2) repeats from the
    AudioSpecificConfig: profile (object type - 1), sampling_frequency_index, channel_configuration."""

    profile: int
    sample_rate_index: int
    channel_config: int


def adts_fields(data: bytes) -> AdtsFields | None:
    """ADTS header fields for an AudioSpecificConfig, None when ADTS cannot say it.

    ADTS has two bits of profile (Main, LC, SSR, LTP) and a sampling frequency index only. An
    explicit-SBR (HE-AAC, HE-AACv2) config is written as its AAC-LC core at the core rate, as
    SRS and ffmpeg do: decoders find the SBR/PS extension in band. An explicit 24-bit rate or an
    object type above 4 has no ADTS form.
    """
    if parse_audio_specific_config(data) is None:
        return None
    try:
        bits = _Bits(bytes(data[:16]))
        object_type = _object_type(bits)
        index = bits.read(4)
        if index == 15:
            return None
        channel_config = bits.read(4)
        if object_type in (_AAC_SBR, _AAC_PS):
            object_type = 2  # the core is AAC-LC
    except _Truncated:
        return None
    if not 1 <= object_type <= 4 or channel_config > 7:
        return None
    return AdtsFields(object_type - 1, index, channel_config)
