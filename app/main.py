"""Streamlit entry point of the study app: ``streamlit run app/main.py``.

The URL picks the page. ``?researcher=1`` opens the researcher area when the server
has one (``app.researcher.render``); every other URL is a participant link
(``?study=<name>``, see ``app.participant``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

import streamlit as st

from app import participant, texts

logger = logging.getLogger(__name__)

RESEARCHER_PARAMETER = "researcher"
RESEARCHER_MODULE = "app.researcher"


def main() -> None:
    """Draw the page that the URL requests."""
    st.set_page_config(page_title="Study", layout="wide")
    if RESEARCHER_PARAMETER in st.query_params:
        render_researcher_area()
        return
    participant.render()


def render_researcher_area() -> None:
    """Draw the researcher area, or a message when this installation has none."""
    if importlib.util.find_spec(RESEARCHER_MODULE) is None:
        st.info(texts.RESEARCHER_UNAVAILABLE)
        return
    importlib.import_module(RESEARCHER_MODULE).render()


if __name__ == "__main__":
    main()
