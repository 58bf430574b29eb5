"""The sketch's protocol.h is generated from the Python codec and must be up to date."""

from pathlib import Path

from droid_common.contract import constants_with_prefix

from droid_eyes import gen_firmware_header
from droid_eyes import protocol as P

FIRMWARE = Path(__file__).resolve().parent.parent / 'firmware' / 'droid_eyes'


def test_committed_header_matches_the_generator():
    committed = (FIRMWARE / 'protocol.h').read_text()
    assert committed == gen_firmware_header.render(), \
        'protocol.h is stale: run python -m droid_eyes.gen_firmware_header'


def test_header_carries_the_codec_and_contract_values():
    text = gen_firmware_header.render()
    assert f'#define EYES_START                     0x{P.START:02X}' in text
    assert f'EYES_T_SET_STATE               0x{P.SET_STATE:02X}' in text
    for name, value in constants_with_prefix('EyeCommand', 'PATTERN_').items():
        assert f'#define EYES_PATTERN_{name.upper():<17} {value}\n' in text


def test_check_mode(tmp_path, capsys):
    out = tmp_path / 'protocol.h'
    assert gen_firmware_header.main(['--check', '--output', str(out)]) == 1
    assert gen_firmware_header.main(['--output', str(out)]) == 0
    assert gen_firmware_header.main(['--check', '--output', str(out)]) == 0
    assert out.read_text() == gen_firmware_header.render()


def test_sketch_uses_only_generated_constants():
    sketch = (FIRMWARE / 'droid_eyes.ino').read_text()
    assert '#include "protocol.h"' in sketch
    for needed in ('EYES_T_FULL_STATE', 'EYES_T_AMPLITUDE', 'EYES_T_DEV_HELLO', 'EYES_T_ACK',
                   'EYES_T_NACK', 'EYES_T_DEV_HEARTBEAT', 'EYES_PATTERN_SPEAKING'):
        assert needed in sketch
    assert '0xA5' not in sketch          # no hand-copied start byte
