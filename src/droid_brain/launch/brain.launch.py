"""The droid's brain: brain (LLM), tool_executor and mode_manager.

    ros2 launch droid_brain brain.launch.py                       # real: OpenAI (OPENAI_API_KEY)
    ros2 launch droid_brain brain.launch.py profile:=mock         # scripted mock brain, no key
    ros2 launch droid_brain brain.launch.py params_file:=/path/my_brain.yaml namespace:=r3x

``profile`` picks config/brain_<profile>.yaml; ``params_file`` (if given) is applied on top.
Without a key and with the official OpenAI base_url the brain itself falls back to the mock
backend with a loud warning.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _nodes(context):
    share = get_package_share_directory('droid_brain')
    profile = LaunchConfiguration('profile').perform(context)
    extra = LaunchConfiguration('params_file').perform(context)
    namespace = LaunchConfiguration('namespace').perform(context)
    use_sim_time = LaunchConfiguration('use_sim_time').perform(context).lower() == 'true'
    params = [os.path.join(share, 'config', f'brain_{profile}.yaml')]
    if not os.path.isfile(params[0]):
        raise RuntimeError(f'unknown profile {profile!r}: {params[0]} does not exist')
    if extra:
        params.append(extra)
    params.append({'use_sim_time': use_sim_time})
    log_level = LaunchConfiguration('log_level').perform(context)
    common = dict(package='droid_brain', namespace=namespace, parameters=params,
                  output='screen', emulate_tty=True, arguments=['--ros-args', '--log-level',
                                                                log_level])
    return [
        Node(executable='brain', name='brain', **common),
        Node(executable='tool_executor', name='tool_executor', **common),
        Node(executable='mode_manager', name='mode_manager', **common),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('profile', default_value='real',
                              description="parameter profile: 'real' or 'mock'"),
        DeclareLaunchArgument('params_file', default_value='',
                              description='extra parameter file applied on top'),
        DeclareLaunchArgument('namespace', default_value='', description='droid namespace'),
        DeclareLaunchArgument('use_sim_time', default_value='false'),
        DeclareLaunchArgument('log_level', default_value='info'),
        OpaqueFunction(function=_nodes),
    ])
