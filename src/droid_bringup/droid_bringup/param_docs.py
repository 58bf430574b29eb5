"""The parameter table of every droid node, read from the node modules' ``declare(...)``
calls (plain Python, ast only).

    python3 -m droid_bringup.param_docs > /tmp/params.md
    python3 -m droid_bringup.param_docs --readme README.md    # rewrite the README's tables

The README's parameter tables are this output; a test keeps them in sync.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
# node name -> the modules whose declare() calls define its parameters
NODES = {
    'microphone': ['droid_audio/droid_audio/microphone_node.py'],
    'microphone (mock)': ['droid_audio/droid_audio/mock_microphone_node.py'],
    'listener': ['droid_audio/droid_audio/listener_node.py'],
    'stt': ['droid_audio/droid_audio/stt_node.py'],
    'stt (mock)': ['droid_audio/droid_audio/mock_stt_node.py'],
    'brain': ['droid_brain/droid_brain/brain_node.py'],
    'tool_executor': ['droid_brain/droid_brain/tool_executor_node.py'],
    'mode_manager': ['droid_brain/droid_brain/mode_manager_node.py'],
    'mind_monitor': ['droid_brain/droid_brain/mind_monitor_node.py'],
    'tts': ['droid_voice/droid_voice/tts_node.py'],
    'music': ['droid_voice/droid_voice/music_node.py'],
    'eyes': ['droid_eyes/droid_eyes/eyes_node.py', 'droid_eyes/droid_eyes/eyes_common.py'],
    'eyes (mock)': ['droid_eyes/droid_eyes/mock_eyes_node.py',
                    'droid_eyes/droid_eyes/eyes_common.py'],
    'web_bridge': ['droid_bringup/droid_bringup/web_bridge_node.py'],
}


def _const(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError):
        return None


def _text(node) -> str:
    value = _const(node)
    if isinstance(value, str):
        return value
    if isinstance(node, ast.JoinedStr):
        return ''.join(v.value if isinstance(v, ast.Constant) else '…' for v in node.values)
    return ''


def declared(path: Path) -> list:
    """[(name, default, description)] of every ``declare(self, 'name', default, 'desc')``."""
    out = []
    for call in ast.walk(ast.parse(path.read_text())):
        if not isinstance(call, ast.Call):
            continue
        fn = call.func.id if isinstance(call.func, ast.Name) else \
            call.func.attr if isinstance(call.func, ast.Attribute) else ''
        if fn != 'declare' or len(call.args) < 3:
            continue
        name = _const(call.args[1])
        if not isinstance(name, str):
            continue
        literal = _const(call.args[2])
        default = repr(literal) if literal is not None or \
            ast.unparse(call.args[2]) == 'None' else '(see node)'
        desc = _text(call.args[3]) if len(call.args) > 3 else ''
        for kw in call.keywords:
            if kw.arg == 'description':
                desc = _text(kw.value)
        out.append((name, default, ' '.join(desc.split())))
    return out


def table(node: str) -> str:
    rows = []
    seen = set()
    for rel in NODES[node]:
        for name, default, desc in declared(SRC / rel):
            if name not in seen:
                seen.add(name)
                shown = default if default == '(see node)' else f'`{default}`'
                rows.append(f'| `{name}` | {shown} | {desc.replace("|", "/")} |')
    return '\n'.join(['| parameter | default | meaning |', '|---|---|---|'] + rows)


def markdown(level: int = 4) -> str:
    return '\n\n'.join(f'{"#" * level} {node}\n\n{table(node)}' for node in NODES) + '\n'


def update_readme(path) -> bool:
    """Replace the README's tables (from the first node heading under ``## Parameters`` to
    the next ``## `` section) with the current ones. True if the file changed."""
    path = Path(path)
    text = path.read_text()
    start = text.index(f'### {next(iter(NODES))}\n', text.index('## Parameters'))
    end = text.index('\n## ', start) + 1
    new = text[:start] + markdown(level=3) + '\n' + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == '__main__':
    if sys.argv[1:2] == ['--readme']:
        print('updated' if update_readme(sys.argv[2]) else 'up to date')
    else:
        sys.stdout.write(markdown())
