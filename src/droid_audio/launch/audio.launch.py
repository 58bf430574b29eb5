"""Run the droid's hearing alone: microphone -> listener -> STT.

    ros2 launch droid_audio audio.launch.py                      # profile:=mock
    ros2 launch droid_audio audio.launch.py profile:=real
    ros2 launch droid_audio audio.launch.py stt:=whisper stt_model:=/path/to/model

profile:=mock  mock_microphone (inject with the audio/inject service) + listener + mock_stt
profile:=real  microphone (sounddevice) + listener + stt (faster-whisper)
Parameters come from config/audio_<profile>.yaml unless params_file:= is given;
stt:=mock|whisper overrides the STT choice of the profile, stt_model:= its model.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _nodes(context):
    profile = LaunchConfiguration('profile').perform(context)
    if profile not in ('mock', 'real'):
        raise RuntimeError(f"profile must be 'mock' or 'real', not {profile!r}")
    share = get_package_share_directory('droid_audio')
    params_file = LaunchConfiguration('params_file').perform(context) or \
        os.path.join(share, 'config', f'audio_{profile}.yaml')
    namespace = LaunchConfiguration('namespace').perform(context)
    sim = LaunchConfiguration('use_sim_time').perform(context).lower() in ('true', '1')
    stt = LaunchConfiguration('stt').perform(context) or \
        ('mock' if profile == 'mock' else 'whisper')
    stt_model = LaunchConfiguration('stt_model').perform(context)
    common = [params_file, {'use_sim_time': sim}]
    mic_exe = 'mock_microphone' if profile == 'mock' else 'microphone'
    stt_params = list(common)
    if stt == 'whisper' and stt_model:
        stt_params.append({'model': stt_model})
    return [
        Node(package='droid_audio', executable=mic_exe, name='microphone',
             namespace=namespace, parameters=common, output='screen'),
        Node(package='droid_audio', executable='listener', name='listener',
             namespace=namespace, parameters=common, output='screen'),
        Node(package='droid_audio', executable='mock_stt' if stt == 'mock' else 'stt',
             name='stt', namespace=namespace, parameters=stt_params, output='screen'),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('profile', default_value='mock', description='mock or real'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='YAML parameters (default config/audio_<profile>.yaml)'),
        DeclareLaunchArgument('namespace', default_value='', description='Namespace of the droid'),
        DeclareLaunchArgument('use_sim_time', default_value='false'),
        DeclareLaunchArgument('stt', default_value='',
                              description="mock or whisper ('' = by profile)"),
        DeclareLaunchArgument('stt_model', default_value='',
                              description='Whisper model directory or size name'),
        OpaqueFunction(function=_nodes),
    ])
