from glob import glob

from setuptools import find_packages, setup

package_name = 'droid_eyes'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/firmware/droid_eyes',
         glob('firmware/droid_eyes/*.ino') + glob('firmware/droid_eyes/*.h')),
        ('share/' + package_name + '/firmware', glob('firmware/*.md') + glob('firmware/*.py')),
        ('share/' + package_name + '/firmware/sim', glob('firmware/sim/*.c')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='droid developers',
    maintainer_email='droid@example.com',
    description='The droid eyes: expression, serial protocol, Arduino firmware, mock eyes.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'eyes = droid_eyes.eyes_node:main',
            'mock_eyes = droid_eyes.mock_eyes_node:main',
        ],
    },
)
