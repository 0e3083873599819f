# Fresh-machine entry points: `make demo` (set up + run the main job) and `make test`.
# Everything installs into .venv from PyPI wheels (ROS 2 Kilted: real rclpy and Fast DDS).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROS_WHEELS := ros-rclpy ros-rmw-fastrtps-cpp ros-rcl-interfaces ros-builtin-interfaces \
	ros-sensor-msgs ros-trajectory-msgs ros-std-msgs ros-std-srvs ros-diagnostic-msgs \
	ros-lifecycle-msgs ros-ament-package
TOOLS := colcon-common-extensions mcap mcap-ros2-support rosbags matplotlib
DEMO_OUT := out/demo

.PHONY: setup demo test bench colcon-test clean

setup: $(STAMP)

$(STAMP): setup.py package.xml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(ROS_WHEELS) $(TOOLS)
	$(BIN)/pip install --quiet -e '.[test,datasets,checkpoints]'
	touch $(STAMP)

demo: setup
	$(BIN)/vla-safety demo --output $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/guard_bench.py

colcon-test: setup
	rm -rf build install log
	. $(BIN)/activate && colcon build --packages-select vla_safety_filter && \
		VLA_SAFETY_DATA=$(abspath ../shared/data) colcon test --packages-select vla_safety_filter && \
		colcon test-result --verbose

clean:
	rm -rf $(VENV) build install log out .pytest_cache .hypothesis
