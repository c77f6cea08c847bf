"""What HLS muxing costs: CPU seconds per GB of published media and % of a core per Mb/s
(run through scripts/mux-cost; docs/hls.md, "Muxers").

The bench's source FLV (H.264 720p ~2 Mb/s + AAC 128k, 10 s, docs/performance.md) is fed
message by message through `TsMuxer` and `Fmp4Muxer`, cutting a segment on every keyframe as
the HLS writer will, `--repeat` times; only the muxing is timed (process CPU time), no file
I/O. A second of a stream at R Mb/s costs R / 8 MB of input, hence the %-of-a-core figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ for bench_lib

from bench_lib.run import LOOP_SECONDS, SOURCE, make_source  # noqa: E402

from srv.app.hls_segmenter import Segmenter  # noqa: E402
from srv.conf.model import HlsConfig  # noqa: E402
from srv.media.flv import TAG_VIDEO, FlvReader, FlvTag, encode_tag, read_flv_file  # noqa: E402
from srv.media.fmp4 import Fmp4Muxer  # noqa: E402
from srv.media.mpegts import TsMuxer  # noqa: E402


def is_cut(tag: FlvTag) -> bool:
    p = tag.payload
    return tag.tag_type == TAG_VIDEO and len(p) > 1 and p[0] == 0x17 and p[1] == 1


def mux_ts(tags: list[FlvTag]) -> int:
    muxer = TsMuxer()
    out = 0
    for tag in tags:
        if is_cut(tag) and muxer.frames.video is not None:
            out += len(muxer.start_segment())
        out += len(muxer.push(tag.tag_type, tag.timestamp, tag.payload))
    return out


def mux_fmp4(tags: list[FlvTag]) -> int:
    muxer = Fmp4Muxer()
    out = 0
    for tag in tags:
        muxer.push(tag.tag_type, tag.timestamp, tag.payload)
        if is_cut(tag):
            out += len(muxer.fragment())
    return out + len(muxer.flush()) + len(muxer.init_segment())


def hls_writer(fmp4: bool) -> Callable[[list[FlvTag]], int]:
    """What the HLS writer does per stream on the loop: read the FLV bytes its consumer gets
    (one batch per 40 ms, as merged writes deliver them) and cut segments (`Segmenter`, which
    drives the muxer); files are written off the loop and not counted."""
    hls = HlsConfig(fragment=2.0)

    def run(tags: list[FlvTag]) -> int:
        batches, batch, until = [], [], 0
        for t in tags:
            batch.append(encode_tag(t.tag_type, t.timestamp, t.payload))
            if t.timestamp >= until:
                batches.append(b"".join(batch))
                batch, until = [], t.timestamp + 40
        batches.append(b"".join(batch))
        start = time.process_time()
        reader = FlvReader(check_previous_tag_size=False, file_header=False)
        segmenter = Segmenter(hls, fmp4)
        out = 0
        for data in batches:
            for tag in reader.feed(data):
                out += sum(len(c.data) for c in segmenter.push(tag.tag_type, tag.timestamp, tag.payload, 0.0))
        last = segmenter.finish()
        run.cpu += time.process_time() - start  # type: ignore[attr-defined]
        return out + (len(last.data) if last else 0)

    run.cpu = 0.0  # type: ignore[attr-defined]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    make_source()
    tags = list(read_flv_file(SOURCE))
    media = sum(len(t.payload) for t in tags if t.tag_type in (8, 9))
    mbps = media * 8 / LOOP_SECONDS / 1e6
    print(f"source: {SOURCE.name}, {media} bytes of media in {LOOP_SECONDS} s = {mbps:.2f} Mb/s, "
          f"{len(tags)} messages, x{args.repeat}")
    rows = [("mpegts", mux_ts), ("fmp4", mux_fmp4), ("writer-ts", hls_writer(False)),
            ("writer-fmp4", hls_writer(True))]
    for name, mux in rows:
        mux(tags)  # warm up
        timed = hasattr(mux, "cpu")
        if timed:
            mux.cpu = 0.0  # type: ignore[attr-defined]
        start = time.process_time()
        for _ in range(args.repeat):
            out = mux(tags)
        cpu = mux.cpu if timed else time.process_time() - start  # type: ignore[attr-defined]
        per_gb = cpu / (media * args.repeat / 1e9)
        core_per_mbps = 100 * cpu / (LOOP_SECONDS * args.repeat) / mbps
        print(f"{name:11s} {per_gb:7.1f} CPU-s/GB  {core_per_mbps:.3f} % of a core per Mb/s  "
              f"({core_per_mbps * 2:.3f} % for a 2 Mb/s stream)  output/input {out / media:.3f}")


if __name__ == "__main__":
    main()
