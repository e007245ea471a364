# The minillm book. Two commands do everything on a fresh machine:
#   make book   build the HTML book into _build/html
#   make test   run every check: notebook checker, unit tests, book build, strict nbval
# Both create (or refresh) the virtual environment .venv first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two pytest workers: one per core on the 2-core laptop the book targets.
WORKERS ?= 2

# Each of the two workers runs one notebook kernel; one torch thread per kernel
# keeps two kernels from fighting over two cores (oversubscribed torch threads
# spin and can be 10x slower). Notebooks read alone in Jupyter use every core.
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/pytest
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: book test check nbval student execute lab clean browser

# The environment is rebuilt whenever pyproject.toml changes. `make book`
# needs the package and the book tools; `make test` adds the test tools and
# the reference libraries (transformers, peft, trl, bitsandbytes) that the
# parity tests compare minillm against.
$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# Prefer a CPU build of torch that already lies on this disk (seconds, no
	@# multi-GB CUDA download); fall back to PyPI's torch anywhere else.
	$(BIN)/python -c "import torch" 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet --no-index --no-deps torch 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet "torch>=2.1"
	$(BIN)/python -m pip install --quiet -e ".[$(subst -,$(comma),$*)]"
	touch $@

comma := ,
BOOK_ENV := $(VENV)/.installed-book
TEST_ENV := $(VENV)/.installed-book-test-ref

book: $(BOOK_ENV)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	$(BIN)/python -m minillm.book math

# Everything CI runs. The book build comes before the tests so that pytest's
# summary is the last thing printed.
# tests/test_book_math.py checks the built book's math (assets, macros) and,
# where chromium is installed, renders math-heavy pages and counts MathJax errors.
test: $(TEST_ENV) browser
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	$(PYTEST) tests/ chapters/ $(NBVAL_FLAGS) -n $(WORKERS) --dist loadfile --durations=10 -p no:cacheprovider

# Headless chromium for the math rendering tests. CI runs as root with CI=true:
# there Debian's chromium is installed if missing (about a minute), so CI always
# renders the math. Elsewhere nothing is installed behind your back; the
# rendering tests skip with a message saying how to get chromium.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium for the math rendering tests (CI, root)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the math rendering tests will skip"; \
	else echo "note: chromium not found, so the math rendering tests will skip (apt-get install chromium)"; fi

# Only the fast checks (checker + unit tests, without the tests marked slow), no notebooks.
# `make test` runs everything, slow tests included.
check: $(TEST_ENV)
	$(PYTEST) tests/ -n $(WORKERS) -m "not slow"

# Only the notebooks, strictly: pytest --nbval chapters/
nbval: $(TEST_ENV)
	$(PYTEST) chapters/ $(NBVAL_FLAGS) -n $(WORKERS) --dist loadfile --durations=10

# The student edition (solutions replaced by `raise NotImplementedError`, with
# nbgrader metadata) in student/, and an nbgrader course in student/nbgrader/.
# Needs only the book environment.
student: $(BOOK_ENV)
	$(BIN)/python -m minillm.book student chapters student

# Re-execute notebooks in place (stored outputs): make execute NB=chapters/01_*/01_*.ipynb
execute: $(TEST_ENV)
	$(BIN)/python -m minillm.book execute $(NB)

lab: $(TEST_ENV)
	$(BIN)/jupyter lab chapters/

clean:
	rm -rf _build student .pytest_cache
