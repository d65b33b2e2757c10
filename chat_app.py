"""MiniCPM-2B Chat, the Streamlit entrypoint.

    streamlit run chat_app.py                       # the model named by MINICPM_MODEL or the default
    streamlit run chat_app.py -- --model DIR_OR_ID  # flags after `--`; see minicpm_core.settings
    streamlit run chat_app.py -- --demo             # a tiny demo model, no download
    streamlit run chat_app.py -- --backend openai --base-url http://HOST:PORT/v1

This file draws the frame every page shares, in order: page config, language switch, the password
or access token (ui/auth.py; before it, nothing else runs), the model (loaded once per process;
switched on the Model page), the switch or loading notice, the demo banner, the sidebar, notices;
then it runs the page chosen in st.navigation. Pages (app_pages/*.py) are thin; their logic lives in ui/.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `streamlit run` adds it; AppTest and other runners may not
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from minicpm_core.errors import MiniCPMError, ModelNotFound  # noqa: E402
from ui import auth, notices, server_guard, setup, sidebar, widget_texts  # noqa: E402
from ui.backend import (  # noqa: E402
    activate,
    get_backend,
    get_slot,
    get_store,
    model_label,
    parse_app_options,
    script_argv,
)
from ui.i18n import t  # noqa: E402

SIDEBAR_PX = 340
# The tab's icon ships with the app: Streamlit sends an SVG file as a data: URL, while a :material/…: or an
# emoji icon makes every browser fetch it from a font or emoji server on the internet (offline: no icon).
ICON = ROOT / "ui" / "icon.svg"
server_guard.install()  # once per process: what Streamlit's own endpoints may do (ui/server_guard.py)

# No layout here: each page sets its own, so Compare (wide) does not flicker through "centered".
# The sidebar's width in pixels: wide enough for the three preset buttons on one row.
st.set_page_config(page_title="MiniCPM Chat", page_icon=str(ICON), initial_sidebar_state=SIDEBAR_PX)
sidebar.language_switch()


def app_pages() -> list:
    # Not a folder named `pages/`: with one, Streamlit 1.67's first run in a process (and every
    # AppTest rerun) uses the legacy pages-directory mode and runs e.g. /compare WITHOUT this
    # entrypoint: no password gate, no sidebar, no model.
    return [
        st.Page("app_pages/chat.py", title=t("page_chat"), icon=":material/chat:", default=True),
        st.Page("app_pages/compare.py", title=t("page_compare"), icon=":material/compare_arrows:"),
        st.Page("app_pages/model.py", title=t("page_model"), icon=":material/memory:"),
    ]


def gate(render, *args) -> None:
    """Show `render` (login, setup) instead of any page. The pages stay registered, hidden, so a
    deep link such as /compare keeps its URL (no "page not found") and opens once the gate is passed."""
    st.navigation(app_pages(), position="hidden")
    render(*args)


def main() -> None:
    if not auth.is_authenticated():
        gate(auth.login_page)
        return
    try:
        options = parse_app_options(script_argv(__file__))
        backend = get_backend(options)  # while the model loads, a PendingBackend: the page is drawn now
    except ModelNotFound as exc:
        gate(setup.missing_model_page, options, exc)
        return
    except MiniCPMError as exc:
        gate(setup.load_error_page, exc)
        return
    slot = get_slot(options)
    activate(backend, slot)
    switching = notices.switch_notice(slot)
    if not backend.ready and not switching:
        notices.loading_notice()
    if backend.demo:
        notices.demo_banner(model_label(backend))
    if backend.gpu_problem:
        notices.gpu_problem_banner(backend.gpu_problem)
    sidebar.render_sidebar(get_store())
    widget_texts.localize_widgets()
    notices.show_flashes()
    page = st.navigation(app_pages())
    try:
        page.run()
    except MiniCPMError as exc:  # last line of defence: a message, never a traceback
        notices.show_error(exc)
    if not backend.ready:
        wait_then_redraw(backend)


def wait_then_redraw(backend) -> None:
    """The page is drawn while the model loads: wait for it, then rerun to draw the loaded state
    (banners, context meter), or the setup/error page if the load failed."""
    try:
        backend.wait()
    except MiniCPMError:
        pass  # the rerun shows it, through get_backend
    st.rerun()


main()
