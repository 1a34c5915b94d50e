"""Notebook UI: the control panel (ipywidgets) and its text rendering. Only this package imports ipywidgets."""
