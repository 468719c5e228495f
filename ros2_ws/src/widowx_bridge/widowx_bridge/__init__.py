"""ROS 2 bridge to the WidowX 250 arm (Interbotix or simulated) and its camera."""
