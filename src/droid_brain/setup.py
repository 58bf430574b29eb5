from glob import glob

from setuptools import find_packages, setup

package_name = 'droid_brain'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'benchmark']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/personas', glob('personas/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='droid developers',
    maintainer_email='droid@example.com',
    description='The droid brain: streaming LLM, tools as actions, personas, memory, modes.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'brain = droid_brain.brain_node:main',
            'tool_executor = droid_brain.tool_executor_node:main',
            'mode_manager = droid_brain.mode_manager_node:main',
            'mind_monitor = droid_brain.mind_monitor_node:main',
        ],
    },
)
