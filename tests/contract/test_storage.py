from claude_mem_core.testing.contracts import StorageContract


class TestStorage(StorageContract):
    """Runs the shipped storage contract against every backend (see conftest)."""
