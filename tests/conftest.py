"""Shared test setup.

DDS isolation: every test session gets its own ROS domain on loopback only, so test runs (and
several developers' runs on one machine) never see each other's nodes.
"""

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # Humble's spelling of the same setting
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
