"""Names of the droid's topics, services and actions, in one place.

All names are relative so that ``namespace:=r3x`` on the launch file moves the whole
droid. Each name's interface type is given beside it.
"""

# droid_audio
AUDIO = 'audio/mic'                          # droid_msgs/AudioChunk, sensor-data QoS
WAKE_WORD = 'audio/wake_word'                # droid_msgs/WakeWord
VOICE_ACTIVITY = 'audio/voice_activity'      # droid_msgs/VoiceActivity
UTTERANCE = 'audio/utterance'                # droid_msgs/Utterance, reliable
INJECT_UTTERANCE = 'audio/inject'            # droid_msgs/srv/InjectUtterance (mock mic)
MOCK_TRANSCRIPT = 'audio/mock_transcript'    # droid_msgs/Transcription: scripted text for mock STT
TRANSCRIPTION = 'speech/transcription'       # droid_msgs/Transcription, reliable

# droid_brain
REPLY = 'brain/reply'                        # droid_msgs/ReplySentence, reliable
SENTIMENT = 'brain/sentiment'                # droid_msgs/Sentiment
PERSONA = 'brain/persona'                    # droid_msgs/Persona, latched
TOOL_CALL = 'tools/call'                     # droid_msgs/action/ToolCall
MODE = 'mode'                                # droid_msgs/SystemMode, latched
SET_MODE = 'set_mode'                        # droid_msgs/srv/SetMode

# droid_voice
SPEAK = 'voice/speak'                        # droid_msgs/action/Speak
SPEECH_EVENT = 'voice/speech_event'          # droid_msgs/SpeechEvent, reliable
AMPLITUDE = 'voice/amplitude'                # droid_msgs/SpeechAmplitude, sensor-data QoS
MUSIC_PLAY = 'music/play'                    # droid_msgs/action/PlayMusic
MUSIC_STATE = 'music/state'                  # droid_msgs/MusicState, latched
MUSIC_CONTROL = 'music/control'              # droid_msgs/srv/MusicControl
PLAYBACK = 'audio/playback'                  # droid_msgs/AudioChunk: what tts/music play (16 kHz, stamped when heard); the echo reference

# droid_eyes
EYE_COMMAND = 'eyes/command'                 # droid_msgs/EyeCommand
EYE_STATE = 'eyes/state'                     # droid_msgs/EyeState, latched
EYE_FRAMES = 'eyes/frames'                   # std_msgs/UInt8MultiArray: each serial frame written (debug)
EYE_IMAGE = 'eyes/image'                     # sensor_msgs/Image rgb8 16x8: the eyes as drawn (web_bridge), latched

# cross-cutting
ACTIVITY_PROBE = 'activity/probe'            # droid_msgs/ActivityProbe: replay -> every node
ACTIVITY_REPORT = 'activity/report'          # droid_msgs/ActivityReport: every node -> replay
TRACE = 'trace'                              # droid_msgs/TraceEvent, reliable
DIAGNOSTICS = '/diagnostics'                 # diagnostic_msgs/DiagnosticArray (absolute, as ROS tools expect)
