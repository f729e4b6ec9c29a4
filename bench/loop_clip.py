"""A long clip for the host-RSS target: a video and its audio looped N times (the frames re-encoded, the audio's
samples repeated), for ``bench_pipeline.py --loop-landmarks`` with the source's landmarks file.

    python bench/loop_clip.py --video demo1_video.mp4 --audio demo1_audio.wav --times 3 --out x3
    # -> x3.mp4 + x3.wav (demo1: 750 video frames; the audio gives 722 output frames)
"""

from __future__ import annotations

import argparse
import wave

import av


def loop_video(src: str, dest: str, times: int, crf: int = 23) -> int:
    """``src`` played ``times`` times in a row, H.264 at the source's size and rate; returns the frames written."""
    with av.open(src) as container:
        stream = container.streams.video[0]
        rate, width, height = stream.average_rate, stream.codec_context.width, stream.codec_context.height
        frames = [f.to_ndarray(format="yuv420p") for f in container.decode(stream)]
    with av.open(dest, "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for _ in range(times):
            for array in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(array, format="yuv420p")):
                    out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return len(frames) * times


def loop_wav(src: str, dest: str, times: int) -> None:
    with wave.open(src) as reader:
        params, samples = reader.getparams(), reader.readframes(reader.getnframes())
    with wave.open(dest, "wb") as writer:
        writer.setparams(params)
        writer.writeframes(samples * times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True, help="a PCM .wav")
    ap.add_argument("--times", type=int, default=3)
    ap.add_argument("--out", required=True, help="output stem: STEM.mp4 and STEM.wav")
    args = ap.parse_args()
    count = loop_video(args.video, f"{args.out}.mp4", args.times)
    loop_wav(args.audio, f"{args.out}.wav", args.times)
    print(f"{args.out}.mp4: {count} frames; {args.out}.wav: the audio {args.times} times")


if __name__ == "__main__":
    main()
