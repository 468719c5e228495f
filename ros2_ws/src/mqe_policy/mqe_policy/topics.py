"""Names of the policy node's topics and services. The camera and action topics are the shared ones
from widowx_bridge.topics; everything the policy node adds is named here. Names are relative so a
launch namespace moves the whole system at once (except /diagnostics, which is global by convention).
"""

from widowx_bridge.topics import ACTION, CAMERA_IMAGE  # noqa: F401  (re-exported: the policy's in/out)

# operator -> policy
GOAL_IMAGE = "policy/goal_image"  # sensor_msgs/Image (rgb8 or bgr8): replaces the goal at run time

# policy -> operator: live feedback, one message per control tick
STATE = "policy/state"  # std_msgs/String: running | paused | stopped | waiting-for-frames
STATE_REASON = "policy/state_reason"  # std_msgs/String: why actions are held ("" when running)
STEPS_TO_GOAL = "policy/steps_to_goal"  # std_msgs/Float32: critic distance / -log(gamma); NaN if none
INFERENCE_LATENCY_MS = "policy/inference_latency_ms"  # std_msgs/Float32: policy graph run time
FRAME_LATENCY_MS = "policy/frame_latency_ms"  # std_msgs/Float32: frame stamp -> action published
FRAME_AGE_S = "policy/frame_age"  # std_msgs/Float32: seconds, now - newest frame stamp at the tick
RATE_HZ = "policy/rate_hz"  # std_msgs/Float32: achieved action rate
TICK_PERIOD_MS = "policy/tick_period_ms"  # std_msgs/Float32: time between the last two control ticks
LIVE_VIEW = "policy/live_view"  # sensor_msgs/Image rgb8: camera | goal and the policy state (mqe-live-view)
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray, once per second

# services (std_srvs/Trigger)
START = "policy/start"  # publish actions (the default after start-up unless autostart is false)
PAUSE = "policy/pause"  # hold actions; inference and feedback continue
STOP = "policy/stop"  # hold actions and stop inference; the arm's command watchdog holds the arm
CAPTURE_GOAL = "policy/capture_goal"  # save the newest camera frame into goal_dir as capture-<UTC time>.png
