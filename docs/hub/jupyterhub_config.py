# jupyterhub_config.py: one class on a virtual QPU (see docs/hub.md).
# Start the hub with the control plane's Redis URL in its environment, e.g.
#   VQPU_REDIS_URL="rediss://gateway:$(cat /etc/vqpu/gateway.pw)@redis.example:6380/0" jupyterhub
# Only the vqpu service receives it; single-user servers and kernels never do.
import os

from jupyter_vqpu_server.hub_config import configure_vqpu

c = get_config()  # noqa: F821

# The course is a hub group; its members are the students.
c.JupyterHub.load_groups = {
    "physics101": {"users": ["ada", "bob"]},
}

configure_vqpu(
    c,
    courses={"physics101": ["prof"]},  # course group -> its instructors (see and cancel the course's tasks)
    admins=["admin"],  # drain/resume devices, publish calibration
    # where the gateway listens (the hub proxies /services/vqpu/ there; servers and kernels call it directly)
    service_url=os.environ.get("VQPU_GATEWAY_URL", "http://127.0.0.1:10101"),
    gateway_config=os.path.join(os.path.dirname(__file__), "vqpu_gateway_config.py"),  # quotas per group
)
