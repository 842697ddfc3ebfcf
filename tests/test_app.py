"""The Flask app class (emailsvc/web.py): hooks and views are called as they are; coroutines are Flask's to run."""

import functools

import pytest


def test_a_plain_function_or_method_is_called_as_it_is(app):
    def view():
        return "ok"

    class Hooks:
        def hook(self, response):
            return response

    bound = Hooks().hook
    assert app.ensure_sync(view) is view
    assert app.ensure_sync(bound) is bound
    assert app.ensure_sync(functools.partial(view)).func is view  # Flask's own check: also called as it is


def test_a_coroutine_function_goes_to_flask_however_it_is_wrapped(app):
    async def view():
        return "ok"

    # Without Flask's async extra installed, Flask refuses it: what matters is that it is not called as it is.
    for func in (view, functools.partial(view)):
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(func)
