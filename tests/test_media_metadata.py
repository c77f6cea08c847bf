"""onMetaData field picking and the SRS /api/v1/streams video/audio description."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from srv.media.metadata import StreamMetadata, describe_stream, metadata_video_codec

# Baseline 3.0, 320x240 (built by tests/test_media_codec.py's SPS writer); AAC LC 44.1k stereo.
AVC_SH = bytes.fromhex("17000000000142001effe100086742001eed0283f201000468ce3880")
AAC_LC_44100_STEREO = b"\xaf\x00\x12\x10"


def test_metadata_values_of_any_amf_type() -> None:
    meta = StreamMetadata.from_amf(
        {
            "width": 1280.0,
            "height": "720",
            "framerate": 29.97,
            "videocodecid": 7.0,
            "audiocodecid": "mp4a",
            "audiosamplerate": 48000,
            "stereo": True,
            "encoder": "Lavf59.27.100",
        }
    )
    assert (meta.width, meta.height, meta.framerate) == (1280, 720, 29.97)
    assert (meta.video_codec, meta.audio_codec) == ("H264", "AAC")
    assert (meta.audio_sample_rate, meta.audio_channels) == (48000, 2)


def test_nonsense_metadata_values_are_dropped() -> None:
    meta = StreamMetadata.from_amf(
        {
            "width": True,
            "height": "tall",
            "framerate": float("nan"),
            "videocodecid": None,
            "audiochannels": -1,
            "encoder": 5,
        }
    )
    assert meta == StreamMetadata()


def test_fourcc_codec_ids_as_numbers_and_strings() -> None:
    assert metadata_video_codec(1752589105.0) == "HEVC"  # 'hvc1' as a big-endian number
    assert metadata_video_codec(float(int.from_bytes(b"av01", "big"))) == "AV1"
    assert metadata_video_codec("vp09") == "VP9"
    assert metadata_video_codec(12) == "HEVC"
    assert metadata_video_codec(99) is None


def test_describe_stream_in_srs_shape() -> None:
    assert describe_stream(AVC_SH, AAC_LC_44100_STEREO) == {
        "video": {
            "codec": "H264",
            "profile": "Baseline",
            "level": "3",
            "width": 320,
            "height": 240,
        },
        "audio": {"codec": "AAC", "sample_rate": 44100, "channel": 2, "profile": "LC"},
    }


def test_describe_stream_from_metadata_only_and_nothing() -> None:
    described = describe_stream(
        metadata={
            "videocodecid": 7,
            "width": 640,
            "height": 360,
            "audiocodecid": 2,
            "audiosamplerate": 44100,
            "audiochannels": 1,
        }
    )
    assert described["video"] == {
        "codec": "H264",
        "profile": "Other",
        "level": "Other",
        "width": 640,
        "height": 360,
    }
    assert described["audio"] == {
        "codec": "MP3",
        "sample_rate": 44100,
        "channel": 1,
        "profile": "Other",
    }
    assert describe_stream() == {"video": None, "audio": None}


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.dictionaries(
        st.sampled_from(
            [
                "width",
                "height",
                "framerate",
                "videocodecid",
                "audiocodecid",
                "audiosamplerate",
                "stereo",
                "audiochannels",
                "encoder",
            ]
        ),
        st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=6)),
    ),
)
def test_describe_stream_never_raises(video: bytes, audio: bytes, meta: dict[str, object]) -> None:
    describe_stream(video, audio, meta)
