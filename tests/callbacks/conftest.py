from tests.federated.conftest import small_config  # noqa: F401  (shared fixture)
