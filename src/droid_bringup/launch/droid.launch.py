"""Start the whole droid.

    ros2 launch droid_bringup droid.launch.py                    # real hardware
    ros2 launch droid_bringup droid.launch.py profile:=mock      # no mic, speaker, serial or key
    ros2 launch droid_bringup droid.launch.py --show-args        # every argument, described
    ros2 launch droid_bringup droid.launch.py role:=body         # this host: the body only
    ros2 launch droid_bringup droid.launch.py role:=mind namespace:=r3x   # a fleet's mind

The node list and parameter layering live in droid_bringup.profiles (plain Python).
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace, SetParameter

from droid_bringup.profiles import (LLM_BACKENDS, PROFILES, ROLES, STT_BACKENDS, TTS_BACKENDS,
                                    check_namespace, check_role, node_environment, parts_of,
                                    plan)

ARGUMENTS = [
    ('profile', 'real',
     f"Which droid to start: {' | '.join(PROFILES)}. 'real' uses the microphone, speaker, "
     "serial eyes and API keys when present (and degrades to what works); 'mock' needs none."),
    ('use_sim_time', 'false',
     'Use /clock (sim time) in every node, e.g. for rosbag replay: true | false.'),
    ('params_file', '',
     'Extra ROS 2 parameter file layered over config/<profile>.yaml (only what it overrides).'),
    ('role', 'all',
     f"Which side of the droid this host runs: {' | '.join(ROLES)}. "
     f"'body' = {', '.join(parts_of('body'))}; 'mind' = {', '.join(parts_of('mind'))}; "
     "'all' = the whole droid on one host. Start the body and the mind on two hosts with "
     'the same namespace and ROS_DOMAIN_ID (README "Many machines").'),
    ('namespace', '', 'Namespace for every node and topic of the droid, e.g. r3x. One mind '
     'host serves a fleet: one role:=mind launch per droid namespace.'),
    ('stt', '', f"Speech-to-text override: {' | '.join(STT_BACKENDS)} (empty = profile's)."),
    ('llm', '', f"LLM backend override: {' | '.join(LLM_BACKENDS)} (empty = profile's)."),
    ('tts', '', f"Text-to-speech backend override: {' | '.join(TTS_BACKENDS)} "
     "(empty = profile's)."),
    ('eyes_port', '', "Serial port (path or glob) of the eyes Arduino, or 'mock' "
     "(empty = profile's)."),
    ('disable', '', 'Comma-separated node names not to start, e.g. microphone,eyes.'),
    ('log_level', 'info', 'Log level of every node: debug | info | warn | error.'),
    ('dashboard', '', 'Web dashboard on http://localhost:9090/ (rosbridge websocket + page): '
     "true | false (empty = profile's: true in mock, false in real)."),
]


def _installed(package: str) -> bool:
    try:
        get_package_share_directory(package)
        return True
    except PackageNotFoundError:
        return False


def _nodes(context):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    config_dir = os.path.join(get_package_share_directory('droid_bringup'), 'config')
    specs = plan(get('profile'), config_dir, params_file=get('params_file'), stt=get('stt'),
                 llm=get('llm'), tts=get('tts'), eyes_port=get('eyes_port'),
                 disable=get('disable'), role=get('role'), namespace=get('namespace'),
                 dashboard=get('dashboard'),
                 rosbridge_installed=_installed('rosbridge_server'))
    actions = [LogInfo(msg=f"droid profile '{get('profile')}', role '{get('role')}': "
                       + ', '.join(f'{s.name}={s.package}/{s.executable}' for s in specs))]
    env = node_environment() or None      # one BLAS thread per node (see profiles)
    for spec in specs:
        actions.append(Node(
            package=spec.package, executable=spec.executable, name=spec.name,
            parameters=[spec.parameters] if spec.parameters else [],
            respawn=spec.respawn, respawn_delay=2.0, output='screen', emulate_tty=True,
            additional_env=env, arguments=['--ros-args', '--log-level', get('log_level')]))
    return actions


def _validate(context):
    """Clear errors for role and namespace before anything uses them."""
    check_role(LaunchConfiguration('role').perform(context))
    check_namespace(LaunchConfiguration('namespace').perform(context))
    return []


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS]
    droid = GroupAction([
        OpaqueFunction(function=_validate),
        PushRosNamespace(LaunchConfiguration('namespace')),
        SetParameter(name='use_sim_time', value=LaunchConfiguration('use_sim_time')),
        OpaqueFunction(function=_nodes),
    ])
    return LaunchDescription(declared + [droid])
