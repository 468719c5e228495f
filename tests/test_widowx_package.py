"""widowx_bridge installs the way colcon (ament_python) installs it on the robot PC: executables
in lib/widowx_bridge (where `ros2 run` and launch look), config and the ament index marker in
share/. colcon runs `setup.py build ... install --prefix ...`; this test does the same."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "ros2_ws", "src", "widowx_bridge")


def test_colcon_style_install_layout(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build", "--build-base", str(tmp_path / "build"),
         "egg_info", "--egg-base", str(tmp_path),
         "install", "--prefix", str(tmp_path / "install"), "--record", str(tmp_path / "files.txt"),
         "--single-version-externally-managed"],
        cwd=PACKAGE, check=True, capture_output=True, text=True, timeout=120)
    install = tmp_path / "install"
    for executable in ("arm_node", "camera_node", "sim_tabletop"):
        assert os.access(install / "lib" / "widowx_bridge" / executable, os.X_OK), executable
    share = install / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "widowx_bridge").is_file()
    assert sorted(p.name for p in (share / "widowx_bridge" / "config").iterdir()) == ["arm.yaml", "camera.yaml", "tabletop.yaml"]
    assert (share / "widowx_bridge" / "package.xml").is_file()


def test_package_xml_declares_the_ros_dependencies():
    root = ElementTree.parse(os.path.join(PACKAGE, "package.xml")).getroot()
    assert root.get("format") == "3" and root.findtext("name") == "widowx_bridge"
    depends = {element.text for element in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "std_srvs", "diagnostic_msgs",
            "python3-numpy", "python3-opencv"} <= depends
    assert root.find("export").findtext("build_type") == "ament_python"
