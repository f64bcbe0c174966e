# Two entry points on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   set everything up, then train (see README)
#   make test   set everything up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
APT_PACKAGES := dataset-fashion-mnist iverilog g++ make perl python3-venv libpython3.11 tcl \
                libusb-1.0-0 libftdi1-2
DEMO_ARGS ?= --device sim --dataset auto --hidden 135 135 --epochs 1 --batch-size 100 --out runs/demo

.PHONY: demo test setup system-packages clean

demo: setup
	$(VENV)/bin/xnorlearn train $(DEMO_ARGS)

test: setup
	$(VENV)/bin/python -m pytest

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq >/dev/null; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || \
	  for p in $$missing; do DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$p >/dev/null || \
	    echo "warning: could not install $$p"; done; \
	else \
	  echo "warning: missing Debian packages:$$missing"; \
	  echo "         not root, so not installing them; run: sudo apt-get install$$missing"; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
