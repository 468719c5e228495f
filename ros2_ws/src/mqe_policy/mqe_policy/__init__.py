"""ROS 2 side of the MQE policy: the policy node, the system description shared by the launch file
and the plain-Python runner, the closed-loop benchmark and the demo."""
