"""The workspace itself: layout, package manifests, lint. Plain Python."""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from configparser import ConfigParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ['droid_msgs', 'droid_audio', 'droid_brain', 'droid_voice', 'droid_eyes',
            'droid_bringup']
PYTHON_PACKAGES = PACKAGES[1:]


def test_top_level_layout():
    assert sorted(p.name for p in (ROOT / 'src').iterdir() if p.is_dir()) == sorted(PACKAGES)
    for entry in ('docker', 'README.md', '.ci/run', 'run_tests.sh'):
        assert (ROOT / entry).exists(), entry


@pytest.mark.parametrize('pkg', PACKAGES)
def test_package_xml_is_format_3_with_plain_dependencies(pkg):
    tree = ET.parse(ROOT / 'src' / pkg / 'package.xml').getroot()
    assert tree.tag == 'package' and tree.get('format') == '3'
    assert tree.findtext('name') == pkg
    assert tree.findtext('license') and tree.findtext('description').strip()
    export = tree.find('export')
    build_type = export.findtext('build_type')
    assert build_type == ('ament_cmake' if pkg == 'droid_msgs' else 'ament_python')
    dep_tags = {'depend', 'build_depend', 'exec_depend', 'test_depend', 'buildtool_depend',
                'build_export_depend'}
    assert not [c.tag for c in export if c.tag in dep_tags], 'depends hidden in <export>'
    deps = [c.text for c in tree if c.tag in dep_tags]
    assert len(deps) == len(set(deps)), f'duplicate depends in {pkg}'
    if pkg != 'droid_msgs':
        assert 'droid_msgs' in deps and 'rclpy' in deps


@pytest.mark.parametrize('pkg', PYTHON_PACKAGES)
def test_ament_python_package_files(pkg):
    base = ROOT / 'src' / pkg
    cfg = ConfigParser()
    cfg.read(base / 'setup.cfg')
    assert cfg['install']['install_scripts'] == f'$base/lib/{pkg}'
    assert (base / 'resource' / pkg).is_file()
    setup = (base / 'setup.py').read_text()
    for needle in ("'resource/' + package_name", "'package.xml'", 'console_scripts'):
        assert needle in setup, f'{pkg}/setup.py lacks {needle}'
    assert (base / pkg / '__init__.py').is_file()


# rclpy modules that are not one executable's node module: the shell shared by eyes and
# mock_eyes, droid_audio's message conversion and its ROS test harness.
RCLPY_ALLOWED = {'droid_eyes/eyes_common.py', 'droid_audio/testing.py', 'droid_audio/msgs.py'}


@pytest.mark.parametrize('pkg', PYTHON_PACKAGES)
def test_logic_modules_do_not_import_rclpy(pkg):
    """Node modules (*_node.py) are the rclpy shells; everything else is plain Python."""
    for path in (ROOT / 'src' / pkg / pkg).glob('*.py'):
        if path.name.endswith('_node.py') or f'{pkg}/{path.name}' in RCLPY_ALLOWED:
            continue
        text = path.read_text()
        assert 'import rclpy' not in text and 'from rclpy' not in text, path.name


def test_no_wall_clock_in_logic_the_graph_relies_on():
    offenders = []
    dirs = [ROOT / 'src' / pkg / pkg for pkg in PYTHON_PACKAGES]
    dirs.append(ROOT / 'src' / 'droid_msgs' / 'droid_common')
    for module_dir in dirs:
        for path in module_dir.glob('*.py'):
            if 'time' + '.time()' in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f'use the node clock instead of time.time(): {offenders}'


def test_ruff_finds_no_errors():
    ruff = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    proc = subprocess.run([ruff, 'check', '--no-cache', '--select', 'E9,F', '--quiet',
                           str(ROOT / 'src')], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
