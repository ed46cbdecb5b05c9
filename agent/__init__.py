"""The HPC-side execution plane: the agent, its executors and the job runner.

Nothing in here needs Jupyter. The runner (``agent.runner``) and the warm
worker (``agent.worker``) need neither Redis nor Jupyter.
"""
