"""MatGen Studio: turn a 2D micrograph into statistically equivalent 2D images and 3D volumes.

Run with ``streamlit run app.py``. This file is the frame around every page: page list, shared
session state (current dataset, run, generated volume) and the sidebar.
"""
import sys
from pathlib import Path

import streamlit as st

_ROOT = Path(__file__).resolve().parent
if str(_ROOT) not in sys.path:  # so `pages._ui` and `matgen_core` import from any cwd
    sys.path.insert(0, str(_ROOT))

from pages import _ui  # noqa: E402

st.set_page_config(page_title="MatGen Studio", page_icon=":material/deployed_code:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/image:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/generate.py", title="Generate & view", icon=":material/view_in_ar:"),
    st.Page("pages/analyze.py", title="Analyze", icon=":material/monitoring:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]
page = st.navigation(pages)
_ui.warm_up()  # once per server, in a background thread: heavy imports, the 3D exporter
_ui.init_state()  # a new session (or a reload) is restored from the URL / the runs folder
_ui.return_to_requested_page()  # a page opened by its address before app.py ever ran
status_slot = st.sidebar.container()
page.run()
_ui.sidebar_status(status_slot)  # after the page, so it shows what the page just changed
_ui.sync_query_params()  # where the user is, in the URL: a reload comes back here
