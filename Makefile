# hospstudy: the two commands a new user runs are `make demo` and `make test`.
# Everything is installed from this repository's own files into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test bench install install-dev browser clean spark-cluster spark-cluster-stop

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps re-run the install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Headless Chromium for the report's browser test, from Debian's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; browser tests will be skipped"; }

demo: install
	$(VENV)/bin/hospstudy demo

test: install-dev browser
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile -q

# BENCH_ONLY=area runs one area; BENCH_FULL=1 adds scale 10 and the Spark cluster; BENCH_SCALE40=1
# adds the nationwide size (bench/bench_scale.py; databases in bench/_work, git-ignored).
bench: install-dev
	$(PY) bench/run.py

# A local Spark standalone cluster (master, two workers) and a Spark Connect server, from the
# installed pyspark's own jars, all on 127.0.0.1 (tools/spark_cluster.py; state in build/spark-cluster).
spark-cluster: install-dev
	$(PY) tools/spark_cluster.py start

spark-cluster-stop:
	$(PY) tools/spark_cluster.py stop

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
