"""Shared test setup (environment only: nothing here is imported by the code under test).

DDS isolation: every test session gets its own ROS domain on loopback only, so test runs (and
several developers' runs on one machine) never see each other's nodes.
"""

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # Humble's spelling of the same setting
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tiny test tensors gain nothing from intra-op threads, and on a loaded 2-core machine two threads
# per process were measured 5-200x slower than one. Subprocesses (DDP ranks, nodes) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
