from glob import glob

from setuptools import find_packages, setup

package_name = 'droid_audio'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'benchmark']),
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
    description='The droid hears: microphone, wake word, voice activity, speech-to-text.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'microphone = droid_audio.microphone_node:main',
            'mock_microphone = droid_audio.mock_microphone_node:main',
            'listener = droid_audio.listener_node:main',
            'stt = droid_audio.stt_node:main',
            'mock_stt = droid_audio.mock_stt_node:main',
            'fetch_models = droid_audio.fetch_models:main',
        ],
    },
)
