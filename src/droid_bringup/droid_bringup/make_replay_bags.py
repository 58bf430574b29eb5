"""Make the replay bags from scenarios: espeak-ng speech + scripted transcripts.

    python3 -m droid_bringup.make_replay_bags SCENARIOS.yaml OUT_DIR [--only NAME]

Each scenario becomes OUT_DIR/NAME/ (rosbag2, mcap storage, written with rosbags) holding
the droid's inputs on a sim time line starting at START_S:
  /audio/mic               droid_msgs/AudioChunk, 80 ms chunks of 16 kHz mono int16;
  /audio/mock_transcript   droid_msgs/Transcription, what the mock STT should "hear", at the
                           start of each utterance (as the mock microphone publishes it).
Silence between utterances is low deterministic noise. Bags stay small (~32 kB/s).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from droid_common import names
from droid_common.audio import FRAME_SAMPLES, MIC_RATE, espeak, to_int16_mono
from droid_common.bagtypes import typestore

START_S = 100          # sim time of the first chunk [s]
NOISE_RMS = 30.0       # background noise level [int16 units]


def scenario_audio(spec: dict, voice: str = 'en-us') -> np.ndarray:
    total = int(round(float(spec['duration_s']) * MIC_RATE))
    rng = np.random.default_rng(1234)
    audio = rng.normal(0.0, NOISE_RMS, total)
    for utt in spec['utterances']:
        samples, rate = espeak(utt['say'], voice=voice)
        speech = to_int16_mono(samples, rate).astype(np.float64)
        start = int(round(float(utt['at_s']) * MIC_RATE))
        end = min(total, start + speech.size)
        audio[start:end] += speech[:end - start]
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def write_bag(path: Path, spec: dict) -> dict:
    from rosbags.rosbag2 import StoragePlugin, Writer
    store = typestore()
    T = store.types
    Time, Header = T['builtin_interfaces/msg/Time'], T['std_msgs/msg/Header']

    def stamp(ns):
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    audio = scenario_audio(spec)
    start_ns = START_S * 1_000_000_000
    if path.exists():
        shutil.rmtree(path)
    chunks = 0
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        mic = writer.add_connection('/' + names.AUDIO, 'droid_msgs/msg/AudioChunk',
                                    typestore=store)
        script = writer.add_connection('/' + names.MOCK_TRANSCRIPT,
                                       'droid_msgs/msg/Transcription', typestore=store)
        events = []
        for seq, i in enumerate(range(0, audio.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)):
            t = start_ns + i * 1_000_000_000 // MIC_RATE
            msg = T['droid_msgs/msg/AudioChunk'](
                header=Header(stamp=stamp(t), frame_id='replay'), sample_rate=MIC_RATE,
                channels=1, seq=seq, data=audio[i:i + FRAME_SAMPLES])
            # logged (= published on replay) when the chunk is complete, as a microphone would
            t_log = t + FRAME_SAMPLES * 1_000_000_000 // MIC_RATE
            events.append((t_log, 0, mic, store.serialize_cdr(msg, 'droid_msgs/msg/AudioChunk')))
            chunks += 1
        for utt in spec['utterances']:
            t = start_ns + int(round(float(utt['at_s']) * 1e9))
            msg = T['droid_msgs/msg/Transcription'](
                header=Header(stamp=stamp(t), frame_id='replay'), conversation_id='',
                utterance_id=0, text=utt['transcript'], is_final=False, confidence=-1.0,
                language='en', audio_start=stamp(t), audio_end=stamp(0), source='script')
            events.append((t, 1, script, store.serialize_cdr(msg, 'droid_msgs/msg/Transcription')))
        for t, _, conn, raw in sorted(events, key=lambda e: (e[0], e[1])):
            writer.write(conn, t, raw)
    return {'chunks': chunks, 'seconds': audio.size / MIC_RATE}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='make_replay_bags', description=__doc__.splitlines()[0])
    p.add_argument('scenarios')
    p.add_argument('out_dir')
    p.add_argument('--only', action='append', help='only this scenario (repeatable)')
    args = p.parse_args(argv)
    specs = yaml.safe_load(Path(args.scenarios).read_text())
    for name, spec in specs.items():
        if args.only and name not in args.only:
            continue
        info = write_bag(Path(args.out_dir) / name, spec)
        print(f"{name}: {info['chunks']} chunks, {info['seconds']:.1f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
