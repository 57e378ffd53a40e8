"""pytest plugin (entry point ``pytest11``): the ``initlint`` fixture and ``assert_init_ok``.

    def test_model_init(initlint):
        initlint.assert_init_ok(MyModel())

    from initlint.pytest_plugin import assert_init_ok   # or without the fixture

Importing this module is cheap: it is loaded into every pytest run of an environment where
initlint is installed, so torch and the rules are imported only when a test uses them.
"""

from __future__ import annotations

from typing import Any

import pytest


def assert_init_ok(model: Any, example_input: Any = None, **options: Any):
    """Fail the test, listing the findings, when ``model``'s init has findings at or above ``fail_on``."""
    __tracebackhide__ = True
    from .api import assert_init_ok as _assert

    return _assert(model, example_input, **options)


class InitlintFixture:
    """What the ``initlint`` fixture gives a test: ``check`` and ``assert_init_ok`` with shared defaults."""

    def __init__(self, **defaults: Any):
        self.defaults = defaults

    def check(self, model: Any, example_input: Any = None, **options: Any):
        from .api import check

        return check(model, example_input, **{**self.defaults, **options})

    def assert_init_ok(self, model: Any, example_input: Any = None, **options: Any):
        __tracebackhide__ = True
        return self.check(model, example_input, **options).raise_for_findings()


@pytest.fixture
def initlint() -> InitlintFixture:
    """Lint a model's initialization: ``initlint.assert_init_ok(MyModel())``."""
    return InitlintFixture()
