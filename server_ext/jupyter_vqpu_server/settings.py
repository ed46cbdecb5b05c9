"""The service's knobs that the single-user extension and the hub gateway share.

Both apps run the same VqpuService, so how it parses circuits (the sandboxed
pool), how durable an acknowledged write is (WAIT), who loads the scripts and how
big a request body may be are the same traitlets on both (``c.VqpuApp.X`` and
``c.VqpuGateway.X``), declared once here.
"""

from __future__ import annotations

from traitlets import Bool, Float, HasTraits, Int, Unicode

from jupyter_vqpu.core import parsing
from jupyter_vqpu.core.connection import Durability, durability_setting
from jupyter_vqpu.core.control import Limits


class ServiceSettings(HasTraits):
    """Mixed into both apps; their config sections (c.VqpuApp, c.VqpuGateway) set these traits."""

    script_loader_url = Unicode(
        "", config=True,
        help="Redis URL of a trusted user that may SCRIPT LOAD (the ACL file's vqpu-admin), used only to (re)load "
        "the control-plane scripts, so that redis_url's user needs no SCRIPT LOAD (`vqpu acl "
        "--admin-password-file`). Empty: $VQPU_SCRIPT_LOADER_URL, else redis_url's user loads them.",
    )
    wait_replicas = Int(-1, config=True, help="Acknowledged means on this many replicas: submit, claim and finish "
                        "return only after WAIT confirms them (a shortfall is a 503 the client retries with its "
                        "idempotency key). -1: the Redis URL's ?wait_replicas= (0 without it).")
    wait_timeout_ms = Int(1000, config=True, help="How long one WAIT (or WAITAOF) waits for the replicas (ms).")
    wait_aof = Bool(False, config=True, help="Also wait for the master's AOF fsync (WAITAOF, Redis 7.2+; an older "
                    "Redis is refused with a readable error).")
    parser_processes = Int(parsing.DEFAULT_POOL_SIZE, config=True,
                           help="Sandboxed processes that parse submitted circuits (the service never parses them).")
    parser_memory_mb = Int(parsing.DEFAULT_MEMORY_MB, config=True,
                           help="Address-space limit of each parser process (MB); a worker needs ~300 MB to start, "
                           "~450 MB for a 1 MB circuit.")
    parser_timeout_s = Float(parsing.DEFAULT_TIMEOUT_S, config=True,
                             help="Wall (and CPU) seconds one circuit may take to parse before its process is killed "
                             "and the user told.")
    parser_max_requests = Int(parsing.DEFAULT_MAX_REQUESTS, config=True,
                              help="Parses after which a parser process is replaced by a fresh one.")
    max_request_bytes = Int(4 * Limits().max_circuit_bytes, config=True,
                            help="Largest request body the API reads (413 past it, refused from the Content-Length "
                            "before reading); keep it above 2x the largest max_circuit_bytes of any group.")

    def parser_pool(self) -> parsing.ParserPool:
        """The sandboxed parser pool these settings describe."""
        return parsing.ParserPool(self.parser_processes, memory_mb=self.parser_memory_mb,
                                  timeout_s=self.parser_timeout_s, max_requests=self.parser_max_requests)

    def durability(self) -> Durability | None:
        """What an acknowledged write waits for (None: the Redis URL says)."""
        return durability_setting(self.wait_replicas, self.wait_timeout_ms, self.wait_aof)
