"""The sidebar's search over every conversation, and opening a conversation at the message found.

- `search_box(store)`: a text box; its results (title, a snippet with the match, the date) are buttons
  and captions in a scrolling container of fixed height. The text of a result is user or model text,
  so it is shown escaped (`plain_text`): never read as Markdown or HTML. The search itself is
  minicpm_core.search (SQLite FTS5, trigram), scoped to the store's owner "" like the conversation list.
- `open_hit`: a result's click: that conversation in the URL, the message's branch shown and drawn
  (ui.chat draws the newest messages first), its id as this session's target.
- `mark_target(message_id)`: the chat page's hook, called inside each drawn message. For the target
  message it adds a hidden frame whose script scrolls that message into view and outlines it. A frame
  (st.iframe: same origin, scripts allowed), because Streamlit has no API to scroll and st.html runs no
  scripts.

The local time zone for dates is the browser's (`st.context.timezone`); UTC where it is unknown.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from minicpm_core.errors import MiniCPMError
from minicpm_core.search import MAX_QUERY_CHARS, SearchHit
from minicpm_core.store import ConversationStore, NotFound
from ui import state
from ui.i18n import t
from ui.markdown_safe import plain_text
from ui.notices import error_text

SEARCH_KEY = "search_query"
SEARCH_TARGET = "_search_target"  # the message id a search result opened: scrolled to and outlined
RESULTS_HEIGHT = 320  # px; more results scroll
OWNER = ""  # the app has one shared list of conversations (ui/auth.py: one password, no users)

# Runs in st.iframe's srcdoc frame (same origin): the message holding it is its frame's chat message.
# A chat page opens with an animated scroll to its bottom, and Streamlit's stick-to-bottom container
# restarts that animation when it is scrolled elsewhere mid-way. A scroll made while it is at rest
# unsticks it, as a user's does: so wait until the page has not scrolled for REST_MS, then bring the
# message into view; again if it is carried away, until it has stayed in view for STILL_MS (at most
# SCROLL_FOR_MS, and never once the user scrolls). Then the message is marked "shown".
REST_MS, STILL_MS, SCROLL_FOR_MS = 200, 500, 8000
_SCROLL_SCRIPT = """<script>
const message = window.frameElement && window.frameElement.closest('[data-testid="stChatMessage"]');
if (message) {
  message.setAttribute('data-search-target', 'scrolling');
  message.style.outline = '2px solid #f5a623';
  message.style.borderRadius = '0.5rem';
  const scroller = message.closest('[data-testid="stAppScrollToBottomContainer"]');
  const started = Date.now();
  let userScrolled = false, lastTop = null, restingSince = started, inViewSince = null;
  const kinds = ['wheel', 'touchmove', 'keydown', 'pointerdown'];
  const stop = (event) => { if (event.isTrusted) userScrolled = true; };
  kinds.forEach(kind => parent.addEventListener(kind, stop, {capture: true}));
  const finish = () => {
    kinds.forEach(kind => parent.removeEventListener(kind, stop, {capture: true}));
    message.setAttribute('data-search-target', 'shown');
  };
  const tick = () => {
    const now = Date.now();
    if (!message.isConnected || userScrolled || now - started >= SCROLL_FOR_MS) return finish();
    const top = scroller ? scroller.scrollTop : parent.scrollY;
    if (top !== lastTop) { lastTop = top; restingSince = now; }
    const box = message.getBoundingClientRect();
    const inView = box.top >= 0 && (box.bottom <= parent.innerHeight || box.top < parent.innerHeight / 2);
    if (inView) {
      if (inViewSince === null) inViewSince = now;
      if (now - inViewSince >= STILL_MS) return finish();
    } else {
      inViewSince = null;
      if (now - restingSince >= REST_MS) message.scrollIntoView({block: 'center'});
    }
    setTimeout(tick, 50);
  };
  tick();
}
</script>"""
for _name, _ms in (("REST_MS", REST_MS), ("STILL_MS", STILL_MS), ("SCROLL_FOR_MS", SCROLL_FOR_MS)):
    _SCROLL_SCRIPT = _SCROLL_SCRIPT.replace(_name, str(_ms))


def browser_timezone() -> tzinfo:
    """The browser's time zone, UTC if it did not say or Python does not know it."""
    try:
        name = st.context.timezone
    except Exception:  # noqa: BLE001 - outside a browser session there is no browser to ask
        name = None
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def local_time(iso: str, zone: tzinfo) -> datetime | None:
    """A stored UTC ISO timestamp in `zone`; None if it is not one (a hand-edited database)."""
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone)


def hit_date(iso: str, zone: tzinfo) -> str:
    moment = local_time(iso, zone)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def hit_caption(hit: SearchHit, zone: tzinfo) -> str:
    """The snippet, the match in bold, and the date: every character of the text escaped."""
    text = plain_text(hit.before) + (f"**{plain_text(hit.match)}**" if hit.match.strip() else "")
    text += plain_text(hit.after)
    return f"{text}  \n{hit_date(hit.created_at, zone)}"


def open_hit(store: ConversationStore, conv_id: str, message_id: str) -> None:
    """A result's on_click: show its conversation at its message. A message on another branch (an
    older version) becomes the shown path; one older than the newest messages drawn gets drawn."""
    try:
        store.select(conv_id, message_id)
    except NotFound:  # deleted in another tab since the search
        state.flash("error", t("conversation_gone"))
        return
    conversation = store.get(conv_id)
    path = [message.id for message in conversation.messages if message.role != "system"] if conversation else []
    if message_id in path:
        state.show_at_least(conv_id, len(path) - path.index(message_id))
    state.set_conversation(conv_id)
    st.session_state[SEARCH_TARGET] = message_id


def forget_target() -> None:
    """Opening a conversation another way (the list, "new") ends the jump to a found message."""
    st.session_state.pop(SEARCH_TARGET, None)


def target_message_id() -> str | None:
    """The message a search result opened, if any: a page that draws only part of a conversation
    should include it."""
    return st.session_state.get(SEARCH_TARGET)


def mark_target(message_id: str) -> None:
    """Inside a drawn message: if it is the one a search result opened, scroll to it and outline it."""
    if message_id != target_message_id():
        return
    with st.container(key="search_target", height=1, border=False):
        st.iframe(_SCROLL_SCRIPT, height=1)


def search_box(store: ConversationStore) -> None:
    query = st.text_input(t("search"), key=SEARCH_KEY, max_chars=MAX_QUERY_CHARS, icon=":material/search:",
                          placeholder=t("search_placeholder"), label_visibility="collapsed")
    if not query.strip():
        return
    try:
        hits = store.search(query, owner=OWNER)
    except MiniCPMError as exc:  # too many words: the message says the limit
        st.caption(error_text(exc))
        return
    if not hits:
        st.caption(t("search_no_results"))
        return
    zone = browser_timezone()
    with st.container(height=RESULTS_HEIGHT if len(hits) > 3 else "content", key="search_results", border=False):
        for hit in hits:
            with st.container(border=True, key=f"search_hit_{hit.message_id}"):
                st.button(plain_text(hit.title) or t("untitled"), key=f"search_open_{hit.message_id}",
                          type="tertiary", on_click=open_hit, args=(store, hit.conversation_id, hit.message_id))
                st.caption(hit_caption(hit, zone))
