from glob import glob

from setuptools import find_packages, setup

package_name = 'droid_bringup'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/web', glob('web/*.*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='droid developers',
    maintainer_email='droid@example.com',
    description='The whole droid: launch profiles, terminal chat, replay tests, latency report, web dashboard.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'chat = droid_bringup.chat_node:main',
            'latency_report = droid_bringup.latency_report_node:main',
            'replay = droid_bringup.replay_node:main',
            'web_bridge = droid_bringup.web_bridge_node:main',
            'probe = droid_bringup.probe_node:main',
        ],
    },
)
