# cosub_mm: `make demo` and `make test` are the two commands a newcomer needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest-xdist workers, one per core up to 4 (0: in-process). Whole files go
# to one worker, so a file's module fixtures are built once.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n >= 4 ? 4 : (n >= 2 ? n : 0) )))

.PHONY: setup test demo clean

setup:
	@bash tools/setup_env.sh

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: setup
	@$(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

demo: setup
	$(PY) tools/demo.py $(DEMO_ARGS)

clean:
	rm -rf work_dirs .pytest_cache
