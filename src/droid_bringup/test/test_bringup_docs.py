"""The README stays true: test command, parameter tables, topic names."""

from pathlib import Path

from droid_bringup import param_docs
from droid_common import names

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / 'README.md').read_text()


def test_readme_names_the_test_command_that_ci_runs():
    assert '```bash\n./run_droid.sh profile:=mock' in README
    assert './run_tests.sh' in README
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'exec ./run_tests.sh' in ci


def test_every_parameter_of_every_node_is_in_the_readme_tables():
    tables = README[README.index('## Parameters'):]
    for node in param_docs.NODES:
        section = tables[tables.index(f'### {node}\n'):]
        section = section[:section.index('\n### ', 1)] if '\n### ' in section[1:] else section
        for path in param_docs.NODES[node]:
            for name, _, desc in param_docs.declared(param_docs.SRC / path):
                assert f'| `{name}` |' in section, f'{node}.{name} missing from README'
                assert desc, f'{node}.{name} has no description'


def test_every_topic_name_is_in_the_readme():
    for key, value in vars(names).items():
        if key.isupper():
            assert f'`{value}`' in README, f'{value} ({key}) missing from README'


def test_readme_tables_are_exactly_the_generated_ones(tmp_path):
    copy = tmp_path / 'README.md'
    copy.write_text(README)
    assert not param_docs.update_readme(copy), \
        'README tables are stale: python3 -m droid_bringup.param_docs --readme README.md'
