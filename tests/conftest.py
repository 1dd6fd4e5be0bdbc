pytest_plugins = ["citysplat.fixtures.pytest_plugin"]
