"""Streamlit UI helpers for chat_app.py: state, strings, sidebar, backend selection and page logic."""
