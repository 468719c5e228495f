"""mqe-eval: trial protocols, blinded and A/B sessions, per-trial MCAP recordings, scoring, reports.

protocol, results, scoring, schedule and report import no ROS, so a report can be made anywhere;
ros_system (the policy processes, arm and sim services) and recorder (MCAP from live topics) need rclpy.
"""
