from glob import glob

from setuptools import find_packages, setup

package_name = 'droid_voice'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='droid developers',
    maintainer_email='droid@example.com',
    description='The droid speaks and plays music: streaming TTS with barge-in, live '
                'amplitude, music with ducking.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'tts = droid_voice.tts_node:main',
            'music = droid_voice.music_node:main',
        ],
    },
)
