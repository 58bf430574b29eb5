"""The droid's voice: the tts node and the music node.

    ros2 launch droid_voice voice.launch.py                       # real: config/voice.yaml
    ros2 launch droid_voice voice.launch.py params_file:=$(ros2 pkg prefix droid_voice)/share/droid_voice/config/voice_mock.yaml
    ros2 launch droid_voice voice.launch.py backend:=espeak library_dir:=~/Music

Arguments left empty keep the value of the params file.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import (
    LaunchConfiguration,
    PathJoinSubstitution,
    PythonExpression,
)
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _override(name: str):
    """A parameter dict entry only when the launch argument is non-empty."""
    value = LaunchConfiguration(name)
    return PythonExpression(["{'", name, "': '", value, "'} if '", value, "' else {}"])


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare('droid_voice'), 'config',
                                           'voice.yaml'])
    args = [
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML with tts/music ros__parameters'),
        DeclareLaunchArgument('namespace', default_value='', description='Namespace of the droid'),
        DeclareLaunchArgument('use_sim_time', default_value='false'),
        DeclareLaunchArgument('backend', default_value='',
                              description='tts backend override: elevenlabs | espeak | mock'),
        DeclareLaunchArgument('output', default_value='',
                              description='output override for both nodes: sounddevice | mock'),
        DeclareLaunchArgument('library_dir', default_value='',
                              description='music library override'),
        DeclareLaunchArgument('music', default_value='true', description='start the music node'),
        DeclareLaunchArgument('log_level', default_value='info'),
    ]
    sim = {'use_sim_time': PythonExpression(["'", LaunchConfiguration('use_sim_time'),
                                             "'.lower() == 'true'"])}
    tts = Node(package='droid_voice', executable='tts', name='tts',
               namespace=LaunchConfiguration('namespace'), output='screen',
               parameters=[LaunchConfiguration('params_file'), sim, _override('backend'),
                           _override('output')],
               arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])
    music = Node(package='droid_voice', executable='music', name='music',
                 namespace=LaunchConfiguration('namespace'), output='screen',
                 condition=IfCondition(LaunchConfiguration('music')),
                 parameters=[LaunchConfiguration('params_file'), sim, _override('output'),
                             _override('library_dir')],
                 arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])
    return LaunchDescription(args + [tts, music])
