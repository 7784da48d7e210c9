"""The Streamlit frame: the entry script (main), the one owner of session state (state), how tables show
numbers (formatting) and the session reaper. Pages live in ../pages; the engine never imports this."""
