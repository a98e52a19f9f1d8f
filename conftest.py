"""Root conftest: the suite's fixtures and options live in event_processor.pytest_plugin,
registered as a pytest11 entry point, so `pytest` in any checkout gets them."""

pytest_plugins = ["pytester"]
