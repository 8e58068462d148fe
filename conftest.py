"""Registers the verify plugin for every pytest run in this checkout (it stays inert unless the
verify suite is collected)."""

pytest_plugins = ["verify.plugin"]
