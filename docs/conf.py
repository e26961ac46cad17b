"""Sphinx configuration: the PyData stack (pydata-sphinx-theme, MyST notebooks executed by myst-nb, numpydoc API
pages). Built by ``make docs`` with warnings as errors; notebooks run once and are cached (jupyter-cache) until
their text changes."""

import inspect
from pathlib import Path

project = "pymc_sgd"
author = "pymc_sgd developers"
extensions = ["myst_nb", "numpydoc", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.mathjax"]
html_theme = "pydata_sphinx_theme"
html_title = "pymc_sgd"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache"]

nb_execution_mode = "cache"
nb_execution_cache_path = str(Path(__file__).parent / "_build" / ".jupyter_cache")  # wherever make runs from
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
suppress_warnings = ["myst.header"]


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    """Show a step's __init__ signature, not the (*args, **kwargs) of PyMC's BlockedStep.__new__."""
    if what == "class" and signature == "(*args, **kwargs)":
        parameters = list(inspect.signature(obj.__init__).parameters.values())[1:]
        return str(inspect.Signature(parameters)), return_annotation
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _init_signature)
