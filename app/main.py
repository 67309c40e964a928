"""Streamlit entry point of the study app: ``streamlit run app/main.py``.

The URL picks the page. ``?researcher=1`` opens the password-protected researcher area
(``app.researcher``); every other URL is a participant link (``?study=<name>``, see
``app.participant``).
"""

from __future__ import annotations

import logging

import streamlit as st

from app import participant, researcher

logger = logging.getLogger(__name__)

RESEARCHER_PARAMETER = "researcher"


def main() -> None:
    """Draw the page that the URL requests."""
    st.set_page_config(page_title="Study", layout="wide")
    if RESEARCHER_PARAMETER in st.query_params:
        researcher.render()
        return
    participant.render()


if __name__ == "__main__":
    main()
