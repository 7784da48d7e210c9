"""Plotly figures and the offline HTML tear sheet: the library's own plots, no Streamlit, so the CLI's
`--report` and a notebook need no face."""
