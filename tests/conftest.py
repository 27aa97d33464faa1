# vmnet's own suite uses its plugin the way users do.
pytest_plugins = ["vmnet.testing"]
