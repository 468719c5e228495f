# The two fresh-machine commands are `make demo` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Every version a fresh machine installs is pinned here; `make lock` rewrites it from the current .venv.
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed


.PHONY: install lock demo test bench-inference bench-data bench-closed-loop bench-ogbench clean

install: $(STAMP)

# torch==2.13.0 goes in first and alone: anything unpinned that depends on torch would otherwise
# pull gigabytes of CUDA wheels.
$(STAMP): training/pyproject.toml requirements-dev.txt $(CONSTRAINTS) ros2_ws/src/mqe_policy/setup.py ros2_ws/src/widowx_bridge/setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pyrealsense2's wheel links Debian's libusb-1.0-0; offscreen MuJoCo renders through OSMesa or EGL.
	dpkg -s libusb-1.0-0 libosmesa6 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libusb-1.0-0 libosmesa6 libegl1)
	$(PIP) install -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -c $(CONSTRAINTS) -e 'training[train,bench,sim]' -r requirements-dev.txt
	$(PIP) install -c $(CONSTRAINTS) -e ros2_ws/src/widowx_bridge -e ros2_ws/src/mqe_policy
	touch $@

demo: install
	$(PY) -m mqe_policy.demo

test: install
	$(PY) -m pytest tests -q

bench-inference: install
	$(PY) -m mqe.bench.cli inference

# The ResNet34 train step at batch 128 does not fit a 24 GB CPU machine at 256 px: smaller timed batches.
bench-data: install
	$(PY) -m mqe.bench.cli data --image-sizes 128 --train-batch-size 32
	$(PY) -m mqe.bench.cli data --image-sizes 256 --train-batch-size 16

bench-closed-loop: install
	$(PY) -m mqe_policy.bench

bench-ogbench: install
	$(PY) -m mqe.bench.cli ogbench

# After changing a dependency: install it into .venv, then `make lock` and commit constraints.txt.
lock:
	( echo '# Pinned versions for make install (written by make lock from .venv; edit the dependency lists, not this).'; \
	  $(PY) -m pip --disable-pip-version-check freeze --exclude-editable | grep -v -i -E '^(mqe|widowx-bridge|widowx_bridge|mqe-policy|mqe_policy)[ =@]' | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' ) > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) runs artifacts
