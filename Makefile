# The two commands of a fresh machine: `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
# lintian: tests/unit/test_package.py lints the .deb as Debian would; systemd-container: live instances;
# e2fsprogs: the local cloud's disks (mke2fs -d); curl: the HTTPS listener as a user checks it (tests/e2e/test_bluegreen_story.py)
APT_PACKAGES := packer mmdebstrap openssh-server openssh-client iproute2 dpkg-dev git fakeroot lintian systemd-container curl e2fsprogs
# what `make test` runs; .ci/run runs exactly this. -n: files run on parallel workers, each in its
# own namespace with its own local cloud (tests/conftest.py); loadfile keeps a file's tests together
# (they share a module's fleet); the slow files start first. `make unit` runs serially.
PYTEST := $(PYTHON) -m pytest -q
PYTEST_WORKERS ?= 5
# checkov scans terraform/ in `make lint`; in a venv of its own (its pins of boto3 and friends are
# not baker's). --skip-download: it asks Prisma Cloud for nothing (no network, no API key).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: deps lint-deps test unit lint demo clean init-templates

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(PYTHON) -c "import baker, moto, ansible, ansible_collections.community.general, pytest, xdist" 2>/dev/null && [ "$$($(PYTHON) -c 'import importlib.metadata as m; print(m.version("moto"))')" = 5.2.5 ] \
	  && command -v actionlint >/dev/null && command -v zizmor >/dev/null \
	  || $(PYTHON) -m pip install -q --disable-pip-version-check -e ".[test]"

lint-deps:
	@[ "$$($(CHECKOV) --version 2>/dev/null)" = $(CHECKOV_VERSION) ] \
	  || { $(PYTHON) -m venv $(CHECKOV_VENV) && $(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"; }

test: deps
	$(PYTEST) -n $(PYTEST_WORKERS) --dist loadfile

unit: deps
	$(PYTEST) tests/unit

lint: deps lint-deps
	ruff check baker tests bench
	ruff format --check baker tests bench
	mypy
	$(CHECKOV) --directory terraform --framework terraform --skip-download --quiet --compact

# --allow-dirty: a demo of a work tree with local edits packages them (the version says .dirty)
demo: deps
	$(PYTHON) -m baker demo -e dev-layered --allow-dirty

# copy this repository's packer/, ansible/ and terraform/ over the copies 'baker init' ships
init-templates:
	$(PYTHON) -c "from pathlib import Path; from baker.init import sync; print(*sync(Path('.')), sep='\n')"

clean:
	rm -rf .baker .pytest_cache .mypy_cache .ruff_cache
