#!/usr/bin/env python3
"""Build the eyes firmware for the ATmega328P (Arduino Uno / Nano) with Debian's packages
only, and the simavr harness that runs it (stdlib only; no arduino-cli, no ROS).

    python3 src/droid_eyes/firmware/avr_build.py        # every configuration, in build/eyes-firmware
    python3 src/droid_eyes/firmware/avr_build.py --config matrix --out /tmp/fw
    python3 src/droid_eyes/firmware/avr_build.py --sim            # also the simulator harness

Needs ``gcc-avr``, ``avr-libc``, ``binutils-avr`` and ``arduino-core-avr`` (the Arduino AVR
core, 1.8.7 on Debian 12) for the firmware; ``gcc`` and ``libsimavr-dev`` for the harness.
The firmware is compiled the way the Arduino IDE compiles it for ``arduino:avr:uno``
(``-Os``, LTO, ``--gc-sections``, F_CPU 16 MHz), the sketch with ``-Wall -Wextra -Werror``
(the Arduino core with the IDE's default, warnings off). Debian's core 1.8.7 needs
``-DDECIMAL_DIG=__DECIMAL_DIG__`` with its gcc-avr 5.4 (WString.cpp).

Tests import this file (``build_firmware``, ``build_simulator``, ``missing_tools``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKETCH_DIR = HERE / 'droid_eyes'
SIM_SOURCE = HERE / 'sim' / 'eyes_sim.c'
ARDUINO_AVR = Path(os.environ.get('ARDUINO_AVR_CORE', '/usr/share/arduino/hardware/arduino/avr'))
CORE_DIR = ARDUINO_AVR / 'cores' / 'arduino'
VARIANT_DIR = ARDUINO_AVR / 'variants' / 'standard'
SIMAVR_INCLUDE = Path('/usr/include/simavr')

MCU = 'atmega328p'
F_CPU = 16_000_000
FLASH_SIZE = 32256        # 32 KiB minus the 512 B Optiboot bootloader (what the Uno allows)
RAM_SIZE = 2048

# name -> extra defines. EYES_USE_MATRIX defaults to 1, EYES_USE_NEOPIXEL to 0.
CONFIGS = {
    'matrix': [],                                            # two MAX7219 8x8 matrices
    'matrix_ring': ['-DEYES_USE_NEOPIXEL=1'],                # matrices and a NeoPixel ring
    'ring': ['-DEYES_USE_MATRIX=0', '-DEYES_USE_NEOPIXEL=1'],  # the NeoPixel ring only
    'none': ['-DEYES_USE_MATRIX=0'],                         # both off: the link only
}

COMMON = ['-mmcu=' + MCU, f'-DF_CPU={F_CPU}L', '-DARDUINO=10807', '-DARDUINO_AVR_UNO',
          '-DARDUINO_ARCH_AVR', '-DDECIMAL_DIG=__DECIMAL_DIG__', '-Os', '-g',
          '-ffunction-sections', '-fdata-sections', '-flto', '-fno-fat-lto-objects']
CFLAGS = ['-std=gnu11']
CXXFLAGS = ['-std=gnu++11', '-fno-exceptions', '-fno-threadsafe-statics']
SKETCH_WARNINGS = ['-Wall', '-Wextra', '-Werror']
CORE_WARNINGS = ['-w']   # the IDE's default for the core
LDFLAGS = ['-mmcu=' + MCU, '-Os', '-g', '-flto', '-fuse-linker-plugin', '-Wl,--gc-sections']


class BuildError(RuntimeError):
    pass


@dataclass
class Firmware:
    config: str
    elf: str
    hex: str
    flash: int          # bytes of program memory (.text + .data)
    ram: int            # bytes of static RAM (.data + .bss), before the stack

    def as_dict(self) -> dict:
        return asdict(self)


def missing_tools(simulator: bool = True) -> list[str]:
    """What is missing to build the firmware (and the simulator harness), as readable
    reasons; empty when everything is there."""
    return _missing_firmware_tools() + (_missing_simulator_tools() if simulator else [])


def _missing_firmware_tools() -> list[str]:
    missing = []
    for tool, pkg in (('avr-gcc', 'gcc-avr'), ('avr-g++', 'gcc-avr'),
                      ('avr-gcc-ar', 'gcc-avr'), ('avr-objcopy', 'binutils-avr'),
                      ('avr-size', 'binutils-avr')):
        if shutil.which(tool) is None:
            missing.append(f'{tool} (Debian package {pkg})')
    if not any(Path(d, 'avr', 'io.h').exists() for d in ('/usr/lib/avr/include',
                                                         '/usr/avr/include')):
        missing.append('avr-libc (Debian package avr-libc)')
    if not (CORE_DIR / 'Arduino.h').exists():
        missing.append(f'the Arduino AVR core in {CORE_DIR} (Debian package arduino-core-avr)')
    return missing


def _missing_simulator_tools() -> list[str]:
    missing = []
    if shutil.which('gcc') is None and shutil.which('cc') is None:
        missing.append('a C compiler for the simulator harness (Debian package gcc)')
    if not (SIMAVR_INCLUDE / 'sim_avr.h').exists():
        missing.append('simavr headers (Debian package libsimavr-dev)')
    if not any(Path(d).glob('libsimavr.so*') for d in _lib_dirs()):
        missing.append('libsimavr (Debian packages libsimavr-dev, libsimavr2)')
    return missing


def _lib_dirs():
    return ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib']


def _run(cmd, cwd=None):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd,
                         check=False)
    if res.returncode != 0:
        raise BuildError(f'{" ".join(str(c) for c in cmd)}\n{res.stdout}{res.stderr}')
    return res


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b'\0')
    return h.hexdigest()[:16]


def _core_sources():
    return sorted(p for p in CORE_DIR.iterdir() if p.suffix in ('.c', '.cpp', '.S'))


def _compile(src: Path, obj: Path, extra: list[str], warnings: list[str], includes: list[Path]):
    inc = [f'-I{p}' for p in includes]
    if src.suffix == '.c':
        cmd = ['avr-gcc', *COMMON, *CFLAGS, *warnings, *extra, *inc, '-c', src, '-o', obj]
    elif src.suffix == '.S':
        cmd = ['avr-gcc', *COMMON, '-x', 'assembler-with-cpp', *extra, *inc, '-c', src,
               '-o', obj]
    else:
        cmd = ['avr-g++', *COMMON, *CXXFLAGS, *warnings, *extra, *inc, '-x', 'c++', '-c', src,
               '-o', obj]
    _run(cmd)
    return obj


def build_core(out: Path, jobs: int | None = None) -> Path:
    """The Arduino core as an archive (cached in ``out`` by the core's files and flags)."""
    sources = _core_sources()
    key = _digest(*COMMON, *CFLAGS, *CXXFLAGS, *CORE_WARNINGS,
                  *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sources))
    core_dir = out / f'core-{key}'
    archive = core_dir / 'core.a'
    if archive.exists():
        return archive
    core_dir.mkdir(parents=True, exist_ok=True)
    includes = [CORE_DIR, VARIANT_DIR]
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        objs = list(pool.map(
            lambda s: _compile(s, core_dir / (s.name + '.o'), [], CORE_WARNINGS, includes),
            sources))
    tmp = core_dir / 'core.a.tmp'
    tmp.unlink(missing_ok=True)
    _run(['avr-gcc-ar', 'rcs', tmp, *objs])
    tmp.replace(archive)
    return archive


def sketch_cpp(sketch_dir: Path, out: Path) -> Path:
    """The sketch as the Arduino builder makes it: ``#include <Arduino.h>`` in front.
    (Our sketch defines every function before its use, so no prototypes are generated.)"""
    ino = sketch_dir / (sketch_dir.name + '.ino')
    text = ino.read_text()
    cpp = out / (ino.name + '.cpp')
    cpp.write_text(f'#include <Arduino.h>\n#line 1 "{ino}"\n{text}')
    return cpp


def build_firmware(config: str = 'matrix', out: str | Path = 'build/eyes-firmware',
                   sketch_dir: str | Path = SKETCH_DIR, extra_flags=(),
                   jobs: int | None = None) -> Firmware:
    """Compile and link one configuration; returns the ELF/HEX paths and the memory use."""
    if config not in CONFIGS:
        raise ValueError(f'unknown configuration {config!r}; one of {", ".join(CONFIGS)}')
    missing = _missing_firmware_tools()
    if missing:
        raise BuildError('cannot build the firmware, missing: ' + '; '.join(missing))
    out = Path(out).resolve()
    sketch_dir = Path(sketch_dir).resolve()
    core = build_core(out, jobs)
    cdir = out / config
    cdir.mkdir(parents=True, exist_ok=True)
    defines = [*CONFIGS[config], *extra_flags]
    cpp = sketch_cpp(sketch_dir, cdir)
    obj = _compile(cpp, cdir / 'sketch.o', defines, SKETCH_WARNINGS,
                   [sketch_dir, CORE_DIR, VARIANT_DIR])
    elf = cdir / 'droid_eyes.elf'
    hexfile = cdir / 'droid_eyes.hex'
    _run(['avr-gcc', *LDFLAGS, '-o', elf, obj, core, '-lm'])
    _run(['avr-objcopy', '-O', 'ihex', '-R', '.eeprom', elf, hexfile])
    flash, ram = memory_use(elf)
    if flash > FLASH_SIZE:
        raise BuildError(f'{config}: {flash} B of flash, more than the {FLASH_SIZE} B available')
    return Firmware(config, str(elf), str(hexfile), flash, ram)


def memory_use(elf: str | Path) -> tuple[int, int]:
    """(flash, static RAM) in bytes, as the Arduino IDE reports them."""
    res = _run(['avr-size', '-A', elf])
    sizes = {}
    for line in res.stdout.splitlines():
        m = re.match(r'^(\.\w+)\s+(\d+)\s+\d+', line)
        if m:
            sizes[m.group(1)] = int(m.group(2))
    text, data, bss = sizes.get('.text', 0), sizes.get('.data', 0), sizes.get('.bss', 0)
    return text + data, data + bss


def build_all(out: str | Path = 'build/eyes-firmware', configs=None) -> dict[str, Firmware]:
    out = Path(out).resolve()
    build_core(out)       # once, before the parallel sketch builds
    names = list(configs or CONFIGS)
    with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 2)) as pool:
        builds = list(pool.map(lambda c: build_firmware(c, out), names))
    return {b.config: b for b in builds}


def build_simulator(out: str | Path = 'build/eyes-firmware') -> Path:
    """Compile the simavr harness (``sim/eyes_sim.c``) with the host C compiler."""
    missing = _missing_simulator_tools()
    if missing:
        raise BuildError('cannot build the simulator harness, missing: ' + '; '.join(missing))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cc = shutil.which('gcc') or shutil.which('cc')
    exe = out / 'eyes_sim'
    _run([cc, '-std=gnu11', '-O2', '-g', '-Wall', '-Wextra', '-Werror',
          f'-I{SIMAVR_INCLUDE}', SIM_SOURCE, '-o', exe, '-lsimavr', '-lutil', '-lm'])
    return exe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--config', action='append', choices=list(CONFIGS),
                    help='configuration to build (repeatable; default: all)')
    ap.add_argument('--out', default='build/eyes-firmware', help='output directory')
    ap.add_argument('--sim', action='store_true', help='also build the simulator harness')
    args = ap.parse_args(argv)
    try:
        builds = build_all(args.out, args.config)
        report = {name: b.as_dict() for name, b in builds.items()}
        if args.sim:
            report['simulator'] = str(build_simulator(args.out))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
