"""Docker files can't run here (no Docker engine): check what can be checked."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / 'docker'


def instructions():
    lines, buf = [], ''
    for raw in (DOCKER / 'Dockerfile').read_text().splitlines():
        if raw.strip().startswith('#') or not raw.strip():
            continue
        buf += raw.rstrip('\\').strip() + ' '
        if not raw.rstrip().endswith('\\'):
            lines.append(buf.strip())
            buf = ''
    return lines


def test_dockerfile_is_on_ros_jazzy_with_pinned_requirements():
    ins = instructions()
    assert ins[0] == 'FROM ros:jazzy'
    keywords = {i.split()[0] for i in ins}
    assert keywords <= {'FROM', 'ARG', 'RUN', 'ENV', 'COPY', 'WORKDIR', 'ENTRYPOINT', 'CMD'}
    run = ' '.join(i for i in ins if i.startswith('RUN'))
    for pkg in ('espeak-ng', 'libportaudio2', 'pulseaudio'):
        assert pkg in run
    assert '-r /tmp/droid/requirements.txt' in run and 'colcon build' in run
    for copied in ('requirements.txt', 'requirements-test.txt', 'src/', 'docker/entrypoint.sh'):
        assert any(i.startswith('COPY') and copied in i for i in ins), copied
        assert (ROOT / copied).exists()
    for line in (ROOT / 'requirements.txt').read_text().splitlines():
        line = line.split('#')[0].strip()
        if line:
            assert '==' in line, f'unpinned requirement: {line}'


def test_compose_has_the_droid_and_the_tests():
    compose = yaml.safe_load((DOCKER / 'compose.yaml').read_text())
    services = compose['services']
    assert set(services) == {'droid', 'tests'}
    assert 'profile:=mock' in services['droid']['command']
    assert 'colcon test' in ' '.join(services['tests']['command'])
    real_compose = yaml.safe_load((DOCKER / 'compose.real.yaml').read_text())
    real = real_compose['services']['droid']
    assert '/dev/snd:/dev/snd' in real['devices'] and 'profile:=real' in real['command']
    assert any('tty' in d for d in real['devices'])
    # the model downloaded on first run survives the container
    assert 'whisper-models:/root/.cache/huggingface' in real['volumes']
    assert 'whisper-models' in real_compose['volumes']
