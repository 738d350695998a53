"""Starts a two-node Ray cluster on this machine, both nodes on 127.0.0.1 with one CPU each,
prints its address, and keeps it up until stdin closes (run by test_ray_cluster.py).

Why not two ``ray start``: Ray swaps a loopback address for the machine's outward IP when a
second node joins that way, and listens there; Ray's own multi-node test harness
(``ray.cluster_utils.Cluster``) keeps both nodes on loopback.
"""

import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (read at import)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from ray.cluster_utils import Cluster  # noqa: E402

cluster = Cluster(initialize_head=True, head_node_args={
    "node_ip_address": "127.0.0.1", "num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0)
print(cluster.address, flush=True)
sys.stdin.read()  # until the test closes our stdin
cluster.shutdown()
