"""droid_voice: the droid speaks (streaming TTS, barge-in, amplitude) and plays music (ducking).

Plain-Python logic (no rclpy): :mod:`sentences`, :mod:`envelope`, :mod:`amplitude`,
:mod:`synth`, :mod:`speaker`, :mod:`output`, :mod:`music`, :mod:`fake_elevenlabs`.
Node shells: :mod:`tts_node` (executable ``tts``) and :mod:`music_node` (``music``).
"""
