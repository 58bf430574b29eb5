"""The dashboard in the launch plan (plain Python): dashboard:=, its parameters, and
rosbridge_suite where it is installed."""

from pathlib import Path

import pytest

from droid_bringup.profiles import ProfileError, dashboard_specs, plan

CONFIG = Path(__file__).resolve().parent.parent / 'config'


def names(specs):
    return [s.name for s in specs]


def test_dashboard_is_on_in_mock_and_off_in_real_by_default():
    assert 'web_bridge' in names(plan('mock', CONFIG))
    assert 'web_bridge' not in names(plan('real', CONFIG))
    assert 'web_bridge' in names(plan('real', CONFIG, dashboard='true'))
    assert 'web_bridge' not in names(plan('mock', CONFIG, dashboard='false'))
    with pytest.raises(ProfileError, match='dashboard'):
        plan('mock', CONFIG, dashboard='maybe')


def test_dashboard_parameters_come_from_the_params_file(tmp_path):
    extra = tmp_path / 'phone.yaml'
    extra.write_text('web_bridge:\n  ros__parameters:\n    host: 0.0.0.0\n    port: 8080\n')
    spec = {s.name: s for s in plan('real', CONFIG, params_file=str(extra),
                                    dashboard='true')}['web_bridge']
    assert (spec.package, spec.executable) == ('droid_bringup', 'web_bridge')
    assert spec.parameters == {'host': '0.0.0.0', 'port': 8080}
    assert not spec.respawn


def test_rosbridge_suite_is_used_where_installed_on_this_machine_only():
    ours = dashboard_specs({}, rosbridge_installed=False)
    assert [(s.package, s.executable) for s in ours] == [('droid_bringup', 'web_bridge')]
    suite = dashboard_specs({}, rosbridge_installed=True)
    assert [(s.package, s.executable) for s in suite] == \
        [('rosbridge_server', 'rosbridge_websocket'), ('droid_bringup', 'web_bridge')]
    assert suite[0].parameters == {'address': '127.0.0.1', 'port': 9090}
    assert suite[1].parameters == {'port': 9091, 'rosbridge_port': 9090}
    # on the network: rosbridge_suite has no token, so ours serves everything
    remote = dashboard_specs({'host': '0.0.0.0'}, rosbridge_installed=True)
    assert [s.executable for s in remote] == ['web_bridge']
