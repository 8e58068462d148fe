"""Makes the checkout importable for its tests, and names the verify plugin for runs without
plugin autoload (PYTEST_DISABLE_PLUGIN_AUTOLOAD). The plugin stays inert unless the verify suite
is collected.

Installed (``pip install -e .``), pytest already loads the plugin through the ``pytest11`` entry
point, which is named ``verify.plugin`` after its module: this line then finds it loaded and does
nothing, instead of registering it a second time (an error in pytest).
"""

pytest_plugins = ["verify.plugin"]
