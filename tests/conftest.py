import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Tests are small: one thread avoids oversubscription when pytest shares the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
