# Fresh-machine entry points: `make demo` (set up + run the main job) and `make test`.
# Everything installs from PyPI wheels (real rclpy and Fast DDS) into one virtualenv per ROS 2
# distribution, .venv-$(ROS_DISTRO). ROS_DISTRO is jazzy (the LTS most robots run) unless given
# on the command line: `make test ROS_DISTRO=kilted`. A sourced ROS environment's $ROS_DISTRO
# does not choose it; the tests see the chosen one.
PYTHON ?= python3
DISTROS := jazzy kilted
ROS_DISTRO = jazzy
ifeq ($(filter $(ROS_DISTRO),$(DISTROS)),)
$(error ROS_DISTRO=$(ROS_DISTRO) is not supported; choose one of: $(DISTROS))
endif
export ROS_DISTRO
VENV := .venv-$(ROS_DISTRO)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# ros-jazzy-* and ros-kilted-* wheels each pin one distribution (the unversioned ros-* ones
# follow the newest on PyPI); .ci/run installs and tests both.
ROS_PACKAGES := rclpy rmw-fastrtps-cpp rcl-interfaces builtin-interfaces sensor-msgs \
	trajectory-msgs std-msgs std-srvs diagnostic-msgs lifecycle-msgs ament-package
ROS_WHEELS := $(addprefix ros-$(ROS_DISTRO)-,$(ROS_PACKAGES))
TOOLS := colcon-common-extensions mcap mcap-ros2-support rosbags matplotlib
# The ament linters' wheels do not declare their Python dependencies: install them alongside.
# (ament_copyright and ament_xmllint are not on PyPI: test_copyright/test_xmllint stand in,
# the latter with catkin_pkg.)
LINTERS := $(addprefix ros-$(ROS_DISTRO)-,ament-flake8 ament-pep257) catkin-pkg flake8 \
	pydocstyle flake8-builtins flake8-comprehensions flake8-docstrings flake8-import-order \
	flake8-quotes flake8-blind-except flake8-class-newline flake8-deprecated
DEMO_OUT := out/demo
# Two distributions may set up at once (.ci/run does): their editable installs both write
# vla_safety_filter.egg-info here, so they take turns where flock exists.
EDITABLE_LOCK := $(shell command -v flock >/dev/null 2>&1 && echo flock .setup.lock)

.PHONY: setup demo test test-ros lint bench colcon-test clean

setup: $(STAMP)

$(STAMP): setup.py package.xml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	echo '*' > $(VENV)/.gitignore
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(ROS_WHEELS) $(TOOLS) $(LINTERS)
	$(EDITABLE_LOCK) $(BIN)/pip install --quiet -e '.[test,datasets,checkpoints,drills,remote,aloha,workspace]'
	# openpi-client pins numpy<2 (opencv for gym-pusht needs >=2); its wire format needs neither
	$(BIN)/pip install --quiet --no-deps openpi-client
	touch $(STAMP)

demo: setup
	$(BIN)/vla-safety demo --output $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest -q --durations=15

# Only the tests that can reach ROS 2 code (marked `ros` by test/conftest.py from their imports):
# what differs between distributions. .ci/run runs `make test` on Jazzy and this on Kilted.
test-ros: setup
	$(BIN)/python -m pytest -q -m ros --durations=15

lint: setup
	$(BIN)/python -m pytest -q -m linter

bench: setup
	$(BIN)/python bench/guard_bench.py

colcon-test: setup
	rm -rf build install log
	. $(BIN)/activate && colcon build --packages-select vla_safety_filter && \
		VLA_SAFETY_DATA=$(abspath ../shared/data) colcon test --packages-select vla_safety_filter && \
		colcon test-result --verbose

clean:
	rm -rf $(DISTROS:%=.venv-%) build install log out .pytest_cache .hypothesis .setup.lock
