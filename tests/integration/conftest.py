"""Fixtures several integration modules use; each is defined in a support module beside its helpers."""

from tests.agents import agent_url  # noqa: F401
from tests.kernel_support import kernel_env, kernel_setup  # noqa: F401
from tests.slurm_support import slurm_cluster  # noqa: F401
