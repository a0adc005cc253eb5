"""Test configuration: the real-service harness plugin (Redis, PostgreSQL, Azurite, a Key
Vault fake). With `CI` set, a backend that cannot be brought up fails the run."""

pytest_plugins = ["tests.harness.plugin", "tests.backends"]
