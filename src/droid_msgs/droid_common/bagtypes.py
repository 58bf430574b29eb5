"""A rosbags typestore that knows every droid_msgs message, read from the .msg files.

Bags are written and read with the pure-Python ``rosbags`` library (no rosbag2
binary needed)::

    from droid_common.bagtypes import typestore
    store = typestore()
    msg = store.types['droid_msgs/msg/Transcription'](...)
"""

from __future__ import annotations

import functools

from droid_common.contract import interface_dir, interface_names


def droid_types() -> dict:
    """{'droid_msgs/msg/Name': parsed definition} for every droid_msgs .msg file."""
    from rosbags.typesys import get_types_from_msg
    types = {}
    for name in interface_names('msg'):
        text = (interface_dir() / 'msg' / f'{name}.msg').read_text()
        types.update(get_types_from_msg(text, f'droid_msgs/msg/{name}'))
    return types


@functools.lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Jazzy typestore of rosbags plus the droid_msgs messages."""
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(droid_types())
    return store
