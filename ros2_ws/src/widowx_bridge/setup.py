from glob import glob

from setuptools import find_packages, setup

package_name = "widowx_bridge"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "modern-robotics"],  # + mqe (pip install ./training)
    zip_safe=True,
    maintainer="MQE deployment team",
    maintainer_email="mqe@example.com",
    description="WidowX 250 arm bridge (Interbotix or simulated) and camera sources for the MQE policy",
    license="MIT",
    entry_points={
        "console_scripts": [
            "arm_node = widowx_bridge.arm_node:main",
            "camera_node = widowx_bridge.camera_node:main",
            "sim_tabletop = widowx_bridge.tabletop:main",
        ],
    },
)
