"""Every settings widget goes to the browser with its current value as its own default, on every run.

Why: a browser that mounts a widget from a run's message without applying it (a page link clicked
while that run was drawing) shows the widget's default and sends it back as the user's change. With
the default an unrelated constant (False, the slider's low end, ""), that turned the think switch off
after a model switch once in about fifteen browser runs (tests/test_browser_switch.py). So the
invariant is checked here, deterministically, through AppTest: after start, a change of every kind,
a preset, a page switch and back, and a reset (a model switch: test_app_switch).
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from test_app import APP, TIMEOUT, ok
from test_app_family_params import thinking_demo  # noqa: F401 (a fixture)
from ui import state

SETTINGS_KEYS = (*state.SLIDER_PARAMS, "seed", "system_prompt", state.THINKING_KEY)


def drawn_default(widget):
    """What a browser shows for `widget` if it mounts it without applying the run's value."""
    proto = widget.proto
    if proto.DESCRIPTOR.name == "Slider":
        return proto.default[0]
    if proto.DESCRIPTOR.name == "NumberInput":
        return proto.default if proto.HasField("default") else None
    if proto.DESCRIPTOR.name == "ButtonGroup":  # segmented control: the chosen option's index
        return widget.options[proto.default[0]] if proto.default else None
    return proto.default


def sidebar_widgets(at: AppTest) -> dict[str, object]:
    widgets = {}
    for kind in ("slider", "number_input", "text_area", "toggle"):
        for widget in getattr(at.sidebar, kind):
            widgets[widget.key] = widget
    return widgets


def assert_drawn_with_their_values(at: AppTest, keys=SETTINGS_KEYS) -> None:
    widgets = sidebar_widgets(ok(at))
    assert set(keys) <= set(widgets), sorted(widgets)  # every settings widget was drawn
    wrong = {key: (widgets[key].value, drawn_default(widgets[key])) for key in keys
             if widgets[key].value != drawn_default(widgets[key])}
    assert not wrong, wrong  # {key: (value, default sent)}


def test_each_settings_widget_is_sent_with_its_value_as_default(thinking_demo):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert_drawn_with_their_values(at)
    assert at.sidebar.toggle(key=state.THINKING_KEY).value is True  # the demo's default: think

    at.sidebar.slider(key="temperature").set_value(0.3).run()
    assert_drawn_with_their_values(at)
    at.sidebar.toggle(key=state.THINKING_KEY).set_value(False).run()
    at.sidebar.number_input(key="seed").set_value(7).run()
    at.sidebar.text_area(key="system_prompt").input("Answer briefly.").run()
    assert_drawn_with_their_values(at)
    assert at.sidebar.toggle(key=state.THINKING_KEY).value is False

    at.sidebar.button(key="preset_creative").click().run()  # a callback sets the sliders
    assert_drawn_with_their_values(at)

    at.switch_page("app_pages/compare.py").run()  # the sidebar's widgets are drawn anew on each page
    assert_drawn_with_their_values(at)
    at.switch_page("app_pages/chat.py").run()
    assert_drawn_with_their_values(at)
    assert (at.sidebar.number_input(key="seed").value, at.sidebar.text_area(key="system_prompt").value,
            at.sidebar.toggle(key=state.THINKING_KEY).value) == (7, "Answer briefly.", False)

    at.sidebar.button(key="reset_settings").click().run()
    assert_drawn_with_their_values(at)
    assert at.sidebar.toggle(key=state.THINKING_KEY).value is True
    assert at.sidebar.number_input(key="seed").value is None

