"""The contract: snapshot, lifecycle, keys, Lua scripts and the control plane.

Imports no Jupyter, IPython, ipywidgets, agent or server code."""
