"""The eyes on their own: ``ros2 launch droid_eyes eyes.launch.py [mock:=true] [port:=...]``.

Arguments: ``mock`` (true: mock_eyes, no serial), ``port`` (path or glob of the Arduino),
``params_file`` (default: config/eyes.yaml of this package), ``render`` (mock only:
none|terminal|png), ``namespace``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory('droid_eyes')
    params = LaunchConfiguration('params_file')
    ns = LaunchConfiguration('namespace')
    return LaunchDescription([
        DeclareLaunchArgument('mock', default_value='false',
                              description='true: mock_eyes (no serial device)'),
        DeclareLaunchArgument('port', default_value='/dev/serial/by-id/*Arduino*',
                              description='serial port path or glob'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'eyes.yaml'),
                              description='YAML parameters for the eyes node'),
        DeclareLaunchArgument('render', default_value='none',
                              description='mock only: none | terminal | png'),
        DeclareLaunchArgument('namespace', default_value='', description='droid namespace'),
        Node(package='droid_eyes', executable='eyes', name='eyes', namespace=ns,
             output='screen', condition=UnlessCondition(LaunchConfiguration('mock')),
             parameters=[params, {'port': LaunchConfiguration('port')}]),
        Node(package='droid_eyes', executable='mock_eyes', name='eyes', namespace=ns,
             output='screen', condition=IfCondition(LaunchConfiguration('mock')),
             parameters=[params, os.path.join(share, 'config', 'mock_eyes.yaml'),
                         {'render': LaunchConfiguration('render')}]),
    ])
