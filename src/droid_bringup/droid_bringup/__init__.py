"""droid_bringup: launch files, profiles, terminal chat, replay and latency tools."""
