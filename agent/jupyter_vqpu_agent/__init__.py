"""The HPC-side execution plane: the agent, its executors and the job runner.

Nothing in here needs Jupyter. The runner (``jupyter_vqpu_agent.runner``) and the warm
worker (``jupyter_vqpu_agent.worker``) need neither Redis nor Jupyter.
"""
