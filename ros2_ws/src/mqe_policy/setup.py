from glob import glob

from setuptools import find_packages, setup

package_name = "mqe_policy"
# The repository's goal images go into the package's share, where the policy node looks for goal:=NAME
# (mqe_policy.system.default_goal_dir) in any workspace; the repository keeps one copy, at its root.
goal_images = sorted(glob("../../../goal_images/*.png"))

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/goal_images", goal_images),
    ],
    install_requires=["setuptools", "numpy", "psutil", "pyyaml"],
    zip_safe=True,
    maintainer="MQE team",
    maintainer_email="mqe@example.com",
    description="MQE goal-image-conditioned policy node, system launch, closed-loop benchmark and demo",
    license="MIT",
    entry_points={
        "console_scripts": [
            "policy_node = mqe_policy.policy_node:main",
            "mqe-run = mqe_policy.run:main",
            "mqe-demo = mqe_policy.demo:main",
            "mqe-closed-loop-bench = mqe_policy.bench:main",
            "mqe-capture-goal = mqe_policy.goal_capture:main",
            "mqe-live-view = mqe_policy.live_view:main",
            "mqe-eval = mqe_policy.evaluation.cli:main",
        ],
    },
)
