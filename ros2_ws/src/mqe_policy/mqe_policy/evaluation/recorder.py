"""One MCAP file per run, recorded from the live topics as rosbag2 records them.

Messages are taken serialized (rclpy raw subscriptions: the CDR bytes as they came over DDS) and
written unchanged, so the file holds exactly what was sent. Channels follow MCAP's ros2 profile and
rosbag2's MCAP storage plugin: message_encoding "cdr", schema encoding "ros2msg" with the .msg text
(msgdefs.py), and channel metadata "offered_qos_profiles" = the publishers' QoS as YAML - ros2 bag
play reads it to re-create each publisher (rosbag2_storage_mcap/src/mcap_storage.cpp writes and
reads that key; foxglove/mcap docs/specification/profiles/ros2.md lists it as required). The YAML is
Humble's form (rosbag2_transport/src/rosbag2_transport/qos.cpp, humble: enum policies as integers,
durations as {sec, nsec}), the robot PC's release.

Attachments: goal.png (the goal image the policy got), protocol_entry.json, and metadata record
"mqe_eval" with the policy fingerprint, method, blinded label, trial and seed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import Writer
from rclpy.node import Node
from rclpy.qos import QoSProfile

from mqe_policy.evaluation.msgdefs import message_definition

RECORDING_PROFILE = "ros2"


def qos_yaml(profiles: list[QoSProfile]) -> str:
    """Humble rosbag2's offered_qos_profiles YAML for a list of publisher QoS profiles."""
    entries = []
    for qos in profiles:
        def duration(value) -> str:
            nanoseconds = value.nanoseconds
            return f"{{sec: {nanoseconds // 1_000_000_000}, nsec: {nanoseconds % 1_000_000_000}}}"

        entries.append(
            f"- history: {int(qos.history)}\n  depth: {int(qos.depth)}\n  reliability: {int(qos.reliability)}\n"
            f"  durability: {int(qos.durability)}\n  deadline: {duration(qos.deadline)}\n  lifespan: {duration(qos.lifespan)}\n"
            f"  liveliness: {int(qos.liveliness)}\n  liveliness_lease_duration: {duration(qos.liveliness_lease_duration)}\n"
            f"  avoid_ros_namespace_conventions: {'true' if qos.avoid_ros_namespace_conventions else 'false'}"
        )
    return "\n".join(entries) + ("\n" if entries else "")


class Recorder:
    """Subscribes once to `topics` ({topic: (msg class, ros type name, subscription QoS)}); between
    start() and stop() every message received is written to the current MCAP file."""

    def __init__(self, node: Node, topics: dict):
        self.node = node
        self.topics = topics
        self._lock = threading.Lock()
        self._writer = None
        self._file = None
        self._channels: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        for topic, (message_class, _, qos) in topics.items():
            node.create_subscription(message_class, topic, self._callback(topic), qos, raw=True)

    def _callback(self, topic: str):
        def on_message(data: bytes) -> None:
            now = time.time_ns()
            with self._lock:
                if self._writer is None:
                    return
                channel = self._channels.get(topic)
                if channel is None:
                    channel = self._register(topic)
                sequence = self.counts.get(topic, 0)
                self._writer.add_message(channel, log_time=now, data=bytes(data), publish_time=now, sequence=sequence)
                self.counts[topic] = sequence + 1

        return on_message

    def _register(self, topic: str) -> int:
        _, type_name, _ = self.topics[topic]
        full_name = self.node.resolve_topic_name(topic)
        offered = [info.qos_profile for info in self.node.get_publishers_info_by_topic(full_name)]
        schema = self._writer.register_schema(type_name, SchemaEncoding.ROS2, message_definition(type_name).encode())
        channel = self._writer.register_channel(full_name, MessageEncoding.CDR, schema,
                                                metadata={"offered_qos_profiles": qos_yaml(offered)})
        self._channels[topic] = channel
        return channel

    def start(self, path: Path, goal_png: bytes | None, attachments: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._file = open(path, "wb")
            self._writer = Writer(self._file)
            self._writer.start(profile=RECORDING_PROFILE, library="mqe-eval")
            self._channels, self.counts = {}, {}
            now = time.time_ns()
            if goal_png is not None:
                self._writer.add_attachment(now, now, "goal.png", "image/png", goal_png)
            self._writer.add_attachment(now, now, "protocol_entry.json", "application/json",
                                        json.dumps(attachments.get("protocol_entry", {}), sort_keys=True).encode())
            self._writer.add_metadata("mqe_eval", {key: json.dumps(value) if not isinstance(value, str) else value
                                                   for key, value in attachments.items() if key != "protocol_entry"})
            # Register every channel up front so a topic that stayed silent still shows in ros2 bag info.
            for topic in self.topics:
                self._register(topic)

    def stop(self) -> dict[str, int]:
        with self._lock:
            if self._writer is not None:
                self._writer.finish()
                self._file.close()
            self._writer = self._file = None
            return dict(self.counts)
