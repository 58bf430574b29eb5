"""droid_audio: the droid hears — microphone, wake word, voice activity, speech-to-text.

Plain-Python logic (no rclpy): :mod:`framing`, :mod:`endpointer`, :mod:`detectors`,
:mod:`mic`, :mod:`mock_source`, :mod:`stt_engine`, :mod:`mock_stt`, :mod:`tiny_whisper`.
Thin rclpy shells: ``*_node.py``, one per executable.
"""
